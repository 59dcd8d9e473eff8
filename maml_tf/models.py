"""The paper's networks as Keras models, with the original initialisers.

Each hidden layer is linear/conv -> Normalization -> ReLU (-> max-pool), as the original's
`normalize`/`conv_block`. The models know nothing about meta-learning: the meta-learner runs
them on fast weights with `stateless_call`.
"""
import keras

from maml_tf.norm import Normalization


def _trunc_normal():
    # tf.truncated_normal(stddev=0.01): re-drawn beyond 2 std, as Keras' TruncatedNormal.
    return keras.initializers.TruncatedNormal(stddev=0.01)


def fc_net(input_shape, hidden_sizes, num_outputs, norm="None", dtype="float32", name="fc_net"):
    """MLP: sinusoid 1-40-40-1 (norm None) or Omniglot non-conv 784-256-128-64-64-N.

    Images are flattened row-major first, as the original fed flat 784-vectors.
    """
    inputs = keras.Input(shape=tuple(input_shape), dtype=dtype)
    x = keras.layers.Flatten(dtype=dtype)(inputs) if len(input_shape) > 1 else inputs
    for i, units in enumerate(hidden_sizes):
        x = keras.layers.Dense(units, kernel_initializer=_trunc_normal(), dtype=dtype, name=f"dense{i + 1}")(x)
        x = Normalization(norm, dtype=dtype, name=f"norm{i + 1}")(x)
        x = keras.layers.ReLU(dtype=dtype)(x)
    outputs = keras.layers.Dense(
        num_outputs, kernel_initializer=_trunc_normal(), dtype=dtype, name=f"dense{len(hidden_sizes) + 1}"
    )(x)
    return keras.Model(inputs, outputs, name=name)


def conv_net(input_shape, num_classes, num_filters, max_pool, norm="batch_norm", dtype="float32", name="conv_net",
             flatten=None):
    """Four 3x3 conv blocks, then the output layer.

    Omniglot (max_pool False): stride-2 convs (28->14->7->4->2), spatial mean, output kernel
    normal(0, 1). MiniImagenet (max_pool True): stride-1 convs + 2x2 max-pool 'VALID'
    (84->42->21->10->5), row-major (h, w, c) flatten, Glorot-uniform output kernel.

    `flatten` picks the output head, which the original chose by data source, not by pooling
    (maml.py, construct_conv_weights' w5 and forward_conv): True, the flatten and Glorot-uniform
    kernel of its MiniImagenet net; False, the spatial mean and normal(0, 1) kernel of its
    Omniglot net, with or without max-pool. Default: `max_pool` (the two nets as the paper ran them).
    """
    inputs = keras.Input(shape=tuple(input_shape), dtype=dtype)
    x = inputs
    for i in range(4):
        x = keras.layers.Conv2D(
            num_filters, 3, strides=1 if max_pool else 2, padding="same",
            kernel_initializer="glorot_uniform", dtype=dtype, name=f"conv{i + 1}",
        )(x)
        x = Normalization(norm, dtype=dtype, name=f"norm{i + 1}")(x)
        x = keras.layers.ReLU(dtype=dtype)(x)
        if max_pool:
            x = keras.layers.MaxPooling2D(2, 2, padding="valid", dtype=dtype)(x)
    if max_pool if flatten is None else flatten:
        x = keras.layers.Flatten(dtype=dtype)(x)
        out_init = "glorot_uniform"
    else:
        x = keras.layers.GlobalAveragePooling2D(dtype=dtype)(x)
        out_init = keras.initializers.RandomNormal(stddev=1.0)
    outputs = keras.layers.Dense(num_classes, kernel_initializer=out_init, dtype=dtype, name="output")(x)
    return keras.Model(inputs, outputs, name=name)


def is_norm_variable(model, variable):
    """True for variables the inner loop must not adapt (Normalization offsets/scales)."""
    norm_ids = {id(v) for layer in model.layers if isinstance(layer, Normalization) for v in layer.weights}
    return id(variable) in norm_ids


def stateless_forward(model):
    """forward(weights, x): the model on the given weight values (one per trainable variable,
    in their order) instead of its variables."""
    return lambda weights, inputs: model.stateless_call(weights, model.non_trainable_variables, inputs)[0]
