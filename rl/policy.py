"""Gaussian MLP policy of maml_rl (`MAMLGaussianMLPPolicy`), on Keras 3.

`Policy` wraps a Keras model that owns the variables (Glorot-uniform kernels,
zero biases, a state-independent log-std vector initialised at log(init_std))
and is what we checkpoint. MAML needs the policy evaluated on adapted
parameters that are tensors, not variables, and for sampling we want all tasks'
adapted policies in one call; `Policy.forward` is therefore an explicit
functional forward pass over a parameter list, which also accepts a leading
task axis on every parameter (params [T, ...], obs [T, M, obs_dim]).
"""
import keras
import numpy as np
import tensorflow as tf

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)

MIN_STD = 1e-6
ACTIVATIONS = {"relu": tf.nn.relu, "tanh": tf.nn.tanh}


class LogStd(keras.layers.Layer):
    """State-independent log standard deviation, broadcast to the batch."""

    def __init__(self, action_dim, init_std=1.0, **kwargs):
        super().__init__(**kwargs)
        self.action_dim = action_dim
        self.init_std = init_std

    def build(self, input_shape):
        self.log_std = self.add_weight(
            shape=(self.action_dim,), name="log_std",
            initializer=keras.initializers.Constant(np.log(self.init_std)))

    def call(self, mean):
        return tf.zeros_like(mean) + self.log_std


class Policy:
    """The Gaussian MLP policy: a Keras model that owns (and checkpoints) the variables, the
    hidden activation, and the functional forward pass MAML needs.

    `forward(params, obs)` evaluates the policy on any parameter list in `params` order
    ([W0, b0, W1, b1, ..., W_out, b_out, log_std]): the variables themselves, adapted
    parameters (tensors), or task-batched ones. `get_flat`/`set_flat` read and write all
    variables as one numpy vector (rllab's `Parameterized`), which is how TRPO moves them.
    """

    def __init__(self, obs_dim, action_dim, hidden_sizes=(100, 100), activation="relu", init_std=1.0,
                 dtype="float32", seed=None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
        self.activation = activation
        self.model = _keras_model(obs_dim, action_dim, hidden_sizes, activation, init_std, dtype, seed)
        self.params = [v.value for v in self.model.trainable_variables]  # the tf.Variables, `forward` order
        self.shapes = [tuple(p.shape) for p in self.params]
        self.dtype = self.params[0].dtype.as_numpy_dtype
        self._compiled_forward = tf.function(self.forward, reduce_retracing=True, autograph=False)

    def forward(self, params, obs):
        """Mean and floored log-std of the policy with parameters `params`.

        Unbatched: params as `self.params`, obs [M, d] -> [M, a].
        Task-batched: every param has a leading axis T, obs [T, M, d] -> [T, M, a].
        """
        act = ACTIVATIONS[self.activation]
        *layers, log_std = params
        batched = log_std.shape.rank == 2
        h = obs
        n_layers = len(layers) // 2
        for i in range(n_layers):
            w, b = layers[2 * i], layers[2 * i + 1]
            h = tf.matmul(h, w) + (b[:, None, :] if batched else b)
            if i < n_layers - 1:
                h = act(h)
        log_std = log_std[:, None, :] if batched else log_std
        log_std = tf.maximum(log_std, np.log(MIN_STD)) + tf.zeros_like(h)
        return h, log_std

    def act_fn(self, params=None):
        """The sampler's callback obs [E, d] -> (mean, log_std) numpy [E, a] (rl.sampler.rollout).

        params None: the policy's variables for every env. Task-batched params [T, ...]: the
        envs are T equal groups in task order (env e = task * E/T + j) and group t is run with
        task t's parameters, all in one call. The callback calls the compiled forward pass's
        concrete function for these parameters directly: the sampler calls it at every time
        step, and the tf.function's dispatch (matching the arguments to a trace) cost about
        as much as the point task's forward pass itself."""
        params = self.params if params is None else [
            p if isinstance(p, tf.Variable) else tf.convert_to_tensor(p, self.dtype) for p in params]
        n_tasks = int(params[-1].shape[0]) if params[-1].shape.rank == 2 else None
        obs_dim = self.params[0].shape[0]
        obs_shape = [None, obs_dim] if n_tasks is None else [n_tasks, None, obs_dim]
        forward = self._compiled_forward.get_concrete_function(params, tf.TensorSpec(obs_shape, self.dtype))

        def act(obs):
            obs = np.asarray(obs, dtype=self.dtype)
            if n_tasks is None:
                return _numpy(forward(params, tf.constant(obs)))
            mean, log_std = forward(params, tf.constant(obs.reshape(n_tasks, -1, obs.shape[-1])))
            return mean.numpy().reshape(len(obs), -1), log_std.numpy().reshape(len(obs), -1)
        return act

    def get_flat(self):
        """All variables as one numpy vector, in `params` order."""
        return np.concatenate([v.numpy().ravel() for v in self.params])

    def set_flat(self, flat):
        """Assign the variables from one vector laid out as `get_flat`'s."""
        for v, value in zip(self.params, unflatten(tf.constant(flat, dtype=self.dtype), self.shapes)):
            v.assign(value)


def _keras_model(obs_dim, action_dim, hidden_sizes, activation, init_std, dtype, seed):
    """Keras model obs -> (mean, unfloored log_std); Glorot-uniform kernels seeded seed + 1, + 2, ..."""
    n_init = [0]

    def glorot():
        n_init[0] += 1
        return keras.initializers.GlorotUniform(seed=None if seed is None else seed + n_init[0])

    inputs = keras.Input((obs_dim,), dtype=dtype)
    h = inputs
    for i, size in enumerate(hidden_sizes):
        h = keras.layers.Dense(size, activation=activation, kernel_initializer=glorot(),
                               bias_initializer="zeros", dtype=dtype, name=f"hidden_{i}")(h)
    mean = keras.layers.Dense(action_dim, kernel_initializer=glorot(), bias_initializer="zeros",
                              dtype=dtype, name="output")(h)
    log_std = LogStd(action_dim, init_std, dtype=dtype, name="output_std_param")(mean)
    return keras.Model(inputs, [mean, log_std], name="policy")


def _numpy(tensors):
    return tuple(t.numpy() for t in tensors)


def log_prob(actions, mean, log_std):
    """log pi(a|s) of the diagonal Gaussian, summed over the action vector (tfp's Normal.log_prob,
    op for op: bit-identical)."""
    scale = tf.exp(log_std)
    z = tf.math.squared_difference(actions / scale, mean / scale)
    return tf.reduce_sum(-0.5 * z - (tf.constant(LOG_SQRT_2PI, dtype=mean.dtype) + tf.math.log(scale)), axis=-1)


def kl(old_mean, old_log_std, mean, log_std):
    """KL(old || new) per timestep (tfp's kl_divergence of two Normals, op for op)."""
    old_scale, scale = tf.exp(old_log_std), tf.exp(log_std)
    diff_log_scale = tf.math.log(old_scale) - tf.math.log(scale)
    return tf.reduce_sum(0.5 * tf.math.squared_difference(old_mean / scale, mean / scale)
                         + 0.5 * tf.math.expm1(2.0 * diff_log_scale) - diff_log_scale, axis=-1)


def flatten(tensors):
    """One flat vector of all the tensors' entries, in order."""
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten(flat, shapes):
    """The inverse of `flatten` for tensors of the given shapes."""
    sizes = [int(np.prod(s)) for s in shapes]
    return [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
