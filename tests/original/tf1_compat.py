"""Import the authors' TF1 code unchanged on TensorFlow 2.

Call `install()` in a process that runs nothing of ours (it switches TensorFlow to graph mode
for good): afterwards `import tensorflow as tf` yields `tf.compat.v1`, and the `tf.contrib`
pieces the original modules use resolve to equivalents of what TF 1.15's contrib did:

- `tf.contrib.layers.batch_norm` (training mode, the only way the original called it) as
  TF 1.0 computed it, the version the original README names: not fused (contrib's default
  then), moments from sufficient statistics around a stop-gradient shift (TF 1.0's
  `nn.moments`, exact to every order of derivative), `nn.batch_normalization` with offset
  `beta`, no scale, epsilon 1e-3; moving averages created but unused. (TF 1.15's contrib
  picked the fused kernel instead; on current TF its second derivative is disconnected inside
  the original's `tf.map_fn`, so that choice would silently make the meta-gradient first
  order through batch norm.)
- `tf.contrib.layers.xavier_initializer(_conv2d)`: Glorot uniform.
- `tf.contrib.metrics.accuracy`: mean of prediction == label.

Nothing of the algorithm lives here. Layer norm is not shimmed (no paper experiment uses it).
"""
import pathlib
import sys
import types

REFERENCE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference"
MAML_DIR = REFERENCE / "cbfinn_maml"
MAML_RL_DIR = REFERENCE / "cbfinn_maml_rl"


def _batch_norm(tf):
    def batch_norm(inputs, activation_fn=None, reuse=None, scope=None, epsilon=0.001, is_training=True, **unused):
        if unused or not is_training:
            raise NotImplementedError(f"batch_norm shim: only the original's call is supported, got {unused}")
        with tf.variable_scope(scope, "BatchNorm", [inputs], reuse=reuse):
            channels = int(inputs.get_shape()[-1])
            dtype = inputs.dtype.base_dtype
            beta = tf.get_variable("beta", [channels], dtype, tf.zeros_initializer(), trainable=True)
            tf.get_variable("moving_mean", [channels], dtype, tf.zeros_initializer(), trainable=False)
            tf.get_variable("moving_variance", [channels], dtype, tf.ones_initializer(), trainable=False)
            # TF 1.0's nn.moments: sufficient statistics around a stop-gradient shift (the mean).
            axes = list(range(inputs.get_shape().ndims - 1))
            shift = tf.stop_gradient(tf.reduce_mean(inputs, axes, keepdims=True))
            counts, m_ss, v_ss, _ = tf.nn.sufficient_statistics(inputs, axes, shift=shift)
            mean, variance = tf.nn.normalize_moments(counts, m_ss, v_ss, tf.reshape(shift, tf.shape(m_ss)))
            y = tf.nn.batch_normalization(inputs, mean, variance, beta, None, epsilon)
            return activation_fn(y) if activation_fn is not None else y

    return batch_norm


def _layer_norm(*args, **kwargs):
    raise NotImplementedError("layer_norm shim: no paper experiment uses --norm=layer_norm")


class _Float64(types.ModuleType):
    """tf.compat.v1 in which `float32` means float64, as do the float32 defaults the original
    relies on (`tf.zeros`, `tf.truncated_normal`, `tf.random_normal`, `tf.to_float`,
    `tf.get_variable`)."""

    def __init__(self, base):
        super().__init__("tensorflow")
        self._base = base
        f64 = base.float64
        self.float32 = f64
        self.zeros = lambda shape, dtype=f64, name=None: base.zeros(shape, dtype, name)
        self.truncated_normal = lambda shape, mean=0.0, stddev=1.0, dtype=f64, seed=None, name=None: (
            base.truncated_normal(shape, mean, stddev, dtype, seed, name))
        self.random_normal = lambda shape, mean=0.0, stddev=1.0, dtype=f64, seed=None, name=None: (
            base.random_normal(shape, mean, stddev, dtype, seed, name))
        self.to_float = lambda x, name="ToFloat": base.cast(x, f64, name=name)
        self.get_variable = lambda name, shape=None, dtype=f64, *args, **kwargs: (
            base.get_variable(name, shape, dtype, *args, **kwargs))

    def __getattr__(self, name):
        return getattr(self._base, name)


def install(float64=False):
    """Graph mode, `tensorflow` -> tf.compat.v1 with a `contrib` namespace; idempotent.

    float64=True runs the original's float32 graph in float64 instead (every float32 it names
    or defaults to becomes float64): the same code, free of float32 round-off, so that it can
    be compared with ours far below float32 round-off."""
    import tensorflow as real_tf

    if getattr(sys.modules["tensorflow"], "_maml_tf_shim", False):
        return sys.modules["tensorflow"]
    base = real_tf.compat.v1
    base.disable_v2_behavior()
    tf = _Float64(base) if float64 else base
    glorot = lambda dtype=tf.float32, **kw: base.glorot_uniform_initializer(dtype=dtype, **kw)  # noqa: E731
    layers = types.ModuleType("tensorflow.contrib.layers.python.layers")
    layers.batch_norm = _batch_norm(tf)
    layers.layer_norm = _layer_norm
    layers.xavier_initializer = glorot
    layers.xavier_initializer_conv2d = glorot
    contrib_layers = types.ModuleType("tensorflow.contrib.layers")
    contrib_layers.__dict__.update({k: v for k, v in vars(layers).items() if not k.startswith("__")})
    contrib_layers.python = types.ModuleType("tensorflow.contrib.layers.python")
    contrib_layers.python.layers = layers
    metrics = types.ModuleType("tensorflow.contrib.metrics")
    metrics.accuracy = lambda predictions, labels: tf.reduce_mean(
        tf.cast(tf.equal(predictions, tf.cast(labels, predictions.dtype)), tf.float32))
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.layers, contrib.metrics = contrib_layers, metrics
    tf.contrib = contrib
    tf._maml_tf_shim = True
    sys.modules.update({
        "tensorflow": tf,
        "tensorflow.contrib": contrib,
        "tensorflow.contrib.layers": contrib_layers,
        "tensorflow.contrib.layers.python": contrib_layers.python,
        "tensorflow.contrib.layers.python.layers": layers,
        "tensorflow.contrib.metrics": metrics,
    })
    return tf


def import_original_maml(float64=False):
    """The authors' `maml`, `utils`, `data_generator` and `main` modules, imported unchanged."""
    install(float64)
    if str(MAML_DIR) not in sys.path:
        sys.path.insert(0, str(MAML_DIR))
    import main  # noqa: F401  (defines the original flags)
    import maml

    return sys.modules["main"], maml
