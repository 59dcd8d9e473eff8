"""Normalisation exactly as the original TF1 code applied it.

Batch norm always normalises with the statistics of the current call (there are no moving
averages: the original ran `tf.contrib.layers.batch_norm` in training mode at train, validation
and test time), has an offset and no scale, and eps 1e-3. Layer norm (contrib defaults)
normalises over every non-batch axis with a per-channel offset and scale and eps 1e-12.

The moments are computed directly. Neither `keras.layers.BatchNormalization` nor
`tf.nn.moments` has exact second derivatives: `tf.nn.moments` takes the variance around
`stop_gradient(mean)`, harmless for first derivatives (the mean's term sums to zero) but wrong
for the Hessian terms MAML's meta-gradient needs. tests/test_meta_gradients.py checks this.
"""
import keras
import tensorflow as tf

NORMS = ("batch_norm", "layer_norm", "None")


class Normalization(keras.layers.Layer):
    """Per-call batch/layer normalisation, or identity for norm 'None'.

    Its parameters are never adapted by the inner loop (they live outside the original's
    `weights` dict); the meta-learner recognises them by this layer type.
    """

    def __init__(self, norm="batch_norm", **kwargs):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = norm

    def build(self, input_shape):
        channels = input_shape[-1]
        if self.norm in ("batch_norm", "layer_norm"):
            self.offset = self.add_weight(name="offset", shape=(channels,), initializer="zeros")
        if self.norm == "layer_norm":
            self.scale = self.add_weight(name="scale", shape=(channels,), initializer="ones")

    def call(self, x):
        if self.norm == "batch_norm":
            return _normalize(x, list(range(len(x.shape) - 1)), 1e-3) + self.offset
        if self.norm == "layer_norm":
            return _normalize(x, list(range(1, len(x.shape))), 1e-12) * self.scale + self.offset
        return x

    def get_config(self):
        return {**super().get_config(), "norm": self.norm}


def _normalize(x, axes, epsilon):
    """(x - mean) / sqrt(var + eps) over `axes`, differentiable to any order."""
    centered = x - tf.reduce_mean(x, axis=axes, keepdims=True)
    variance = tf.reduce_mean(tf.square(centered), axis=axes, keepdims=True)
    return centered * tf.math.rsqrt(variance + epsilon)
