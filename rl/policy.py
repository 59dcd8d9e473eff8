"""Gaussian MLP policy of maml_rl (`MAMLGaussianMLPPolicy`), on Keras 3 + tfp.

The Keras model owns the variables (Glorot-uniform kernels, zero biases, a
state-independent log-std vector initialised at log(init_std)) and is what we
checkpoint. MAML needs the policy evaluated on *fast weights* that are tensors,
not variables, and for sampling we want all tasks' adapted policies in one call;
`forward` is therefore an explicit functional forward pass over a parameter
list, which also accepts a leading task axis on every parameter
(params [T, ...], obs [T, M, obs_dim]).
"""
import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

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


def build_policy(obs_dim, action_dim, hidden_sizes=(100, 100), activation="relu",
                 init_std=1.0, dtype="float32", seed=None):
    """Keras model obs -> (mean, unfloored log_std). Variables in `forward` order:
    [W0, b0, W1, b1, ..., W_out, b_out, log_std]."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
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
    model = keras.Model(inputs, [mean, log_std], name="policy")
    model.activation_name = activation
    return model


def policy_params(model):
    """The model's trainable variables as `tf.Variable`s, in `forward` order."""
    return [v.value for v in model.trainable_variables]


def forward(params, obs, activation="relu"):
    """Mean and floored log-std of the policy with parameters `params`.

    Unbatched: params as in `policy_params`, obs [M, d] -> [M, a].
    Task-batched: every param has a leading axis T, obs [T, M, d] -> [T, M, a].
    """
    act = ACTIVATIONS[activation]
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


def distribution(mean, log_std):
    """Diagonal Gaussian over the action vector (event = last axis)."""
    return tfd.Independent(tfd.Normal(loc=mean, scale=tf.exp(log_std)), reinterpreted_batch_ndims=1)


def log_prob(actions, mean, log_std):
    return distribution(mean, log_std).log_prob(actions)


def kl(old_mean, old_log_std, mean, log_std):
    """KL(old || new) per timestep."""
    return tfd.kl_divergence(distribution(old_mean, old_log_std), distribution(mean, log_std))


def flatten(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten(flat, shapes):
    sizes = [int(np.prod(s)) for s in shapes]
    return [tf.reshape(p, s) for p, s in zip(tf.split(flat, sizes), shapes)]
