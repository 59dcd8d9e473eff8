"""The paper's networks run on per-task weights for every task of a meta-batch at once.

A Python loop over tasks issues tens of small ops per task per layer; small ops use two cores
badly and their count makes tracing slow. Here each weight the inner loop adapts carries a
leading task axis and each layer is one op over all tasks: dense layers are batched matmuls and
3x3 convolutions batched matmuls on im2col patches (nine slices of the padded input, whose
derivatives are pads and slices, plus a column of ones that carries the bias). Batch norm
statistics stay per task (over each task's examples and positions); max-pool works per example. A convolution whose per-task input is
large runs instead as one native convolution per task (`_use_per_task_conv`): the loop's op
overhead is then small and im2col's copies would dominate. Before the first inner step every
task has the same kernels: a `SharedKernel` then runs each convolution once over all tasks'
examples, and only the kernel gradients are computed per task (`_shared_conv`).

`batched_forward(model)` reads the layer chain of a `models.fc_net` or `models.conv_net` and
returns `forward(weights, x)`, with `weights` ordered as `model.trainable_variables`: each one
either shared (the variable's shape) or per task ([tasks, *shape]), and `x` [tasks, n, ...].
Anything else in the model raises `UnsupportedModelError` rather than computing something else.
"""
import math
import time
from typing import NamedTuple

import keras
import tensorflow as tf

from maml_tf.norm import Normalization, _normalize
from report.determinism import keep_sums_in_order

keep_sums_in_order()  # the same bits on every call, the calibration's timings too (report/determinism.py)


class UnsupportedModelError(ValueError):
    """The model holds a layer (or a layer option) the batched forward does not implement."""


CONV_METHODS = ("auto", "im2col", "per_task", "grouped")


def batched_forward(model, conv="auto"):
    """forward(weights, x[tasks, n, ...]) -> [tasks, n, outputs] for the given Keras model.

    A dense kernel may be a `LowRankKernel` (an adapted kernel kept factored), a conv kernel a
    `SharedKernel` (the shared kernel before the first inner step); `forward.dense_kernels` and
    `forward.conv_kernels` are the indices of those kernels in `weights`. With
    `taps` ({dense kernel index: tensor shaped that layer's output [tasks, n, out]}),
    `forward(weights, x, taps)` adds each tap to its layer's output x W + b (zeros change
    nothing, and the gradient with respect to a tap is the loss's gradient with respect to that
    output) and returns the pair (outputs, {kernel index: that layer's input}).

    `conv` picks how a convolution with per-task kernels runs: "im2col" (one batched matmul
    for all tasks; best for many tasks with little work each, e.g. Omniglot), "per_task" (one
    native convolution per task; best for few tasks with large images, e.g. MiniImagenet),
    "grouped" (one native grouped convolution, tasks x channels wide), "auto", which chooses
    per layer from the static shapes, or a dict {conv layer name: method} (`calibrate_convs`;
    layers it does not name use "auto"). All compute the same convolution; they differ in
    round-off only.
    """
    methods = conv if isinstance(conv, dict) else None
    for method in [conv] if methods is None else methods.values():
        if method not in CONV_METHODS:
            raise ValueError(f"conv must be one of {CONV_METHODS} (or a dict of them by layer), got {method!r}")
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    layers = _layer_chain(model)
    if methods is not None and set(methods) - {layer.name for layer in layers}:
        raise ValueError(f"conv names layers the model does not have: {sorted(set(methods) - {l.name for l in layers})}")
    steps = [_step(layer, index, conv if methods is None else methods.get(layer.name, "auto")) for layer in layers]
    steps = [s for s in steps if s is not None]
    if MAX_POOL_BEFORE_RELU:
        steps = _pool_before_relu(steps)
    if MAX_POOL_BEFORE_BATCH_NORM:
        steps = _pool_before_batch_norm(steps)

    def forward(weights, x, taps=None):
        x = tf.convert_to_tensor(x)
        layer_inputs = {}
        for step in steps:
            if not getattr(step, "takes_task_list", False):
                x = _stacked(x)
            kernel = getattr(step, "kernel", None)
            if taps is not None and kernel in taps:
                layer_inputs[kernel] = x
                x = step(weights, x) + taps[kernel]
            else:
                x = step(weights, x)
        x = _stacked(x)
        return x if taps is None else (x, layer_inputs)

    # The variable indices of the kernels it runs as dense layers and as convolutions: those a
    # `LowRankKernel` or a `SharedKernel` may stand for.
    forward.dense_kernels = frozenset(s.kernel for s in steps if hasattr(s, "kernel"))
    forward.conv_kernels = frozenset(s.conv_kernel for s in steps if hasattr(s, "conv_kernel"))
    return forward


def _layer_chain(model):
    """The model's layers after its input, checked to form a single chain."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(f"{model.name}: the batched forward needs one input and one output")
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    previous = model.inputs[0]
    for layer in layers:
        try:
            layer_input = layer.input
        except (AttributeError, ValueError) as error:  # layer used more than once, or not in a graph
            raise UnsupportedModelError(f"{model.name}: layer {layer.name} is not part of a simple chain") from error
        if layer_input is not previous:
            raise UnsupportedModelError(f"{model.name}: layer {layer.name} is not part of a simple chain")
        previous = layer.output
    if previous is not model.outputs[0]:
        raise UnsupportedModelError(f"{model.name}: the layer chain does not end at the model's output")
    return layers


def _step(layer, index, conv):
    """One layer as a function of (weights, x[tasks, n, ...]); None for a no-op."""
    name = f"layer {layer.name} ({type(layer).__name__})"
    if isinstance(layer, keras.layers.Dense):
        _require(layer.activation is keras.activations.linear and layer.use_bias, name, "needs a linear Dense with bias")
        _require(len(layer.input.shape) == 2, name, "needs Dense inputs [examples, features]")
        return _dense(index[id(layer.kernel)], index[id(layer.bias)])
    if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
        _require(layer.activation is keras.activations.linear and layer.use_bias, name, "needs a linear conv with bias")
        _require(layer.data_format == "channels_last" and tuple(layer.dilation_rate) == (1, 1)
                 and layer.groups == 1 and layer.padding == "same", name,
                 "supports channels_last, 'same' padding, no dilation or groups")
        return _conv2d(index[id(layer.kernel)], index[id(layer.bias)], tuple(layer.kernel_size), tuple(layer.strides),
                       conv)
    if isinstance(layer, Normalization):
        if layer.norm == "batch_norm":
            return _batch_norm(index[id(layer.offset)])
        if layer.norm == "layer_norm":
            return _layer_norm(index[id(layer.scale)], index[id(layer.offset)])
        return None
    if isinstance(layer, keras.layers.ReLU):
        _require(layer.max_value is None and float(layer.negative_slope) == 0.0 and float(layer.threshold) == 0.0,
                 name, "supports the plain ReLU only")
        return _relu()
    if isinstance(layer, keras.layers.MaxPooling2D):
        _require(layer.data_format == "channels_last", name, "supports channels_last only")
        return _max_pool(tuple(layer.pool_size), tuple(layer.strides), layer.padding.upper())
    if isinstance(layer, keras.layers.GlobalAveragePooling2D):
        _require(layer.data_format == "channels_last" and not layer.keepdims, name, "supports channels_last only")
        return lambda weights, x: tf.reduce_mean(x, axis=[2, 3])
    if isinstance(layer, keras.layers.Flatten):
        _require(layer.data_format == "channels_last", name, "supports channels_last only")
        return lambda weights, x: tf.reshape(x, [x.shape[0], x.shape[1], math.prod(x.shape[2:])])
    raise UnsupportedModelError(f"{name}: the batched forward does not implement this layer type")


def _stacked(x):
    """x [tasks, n, ...] from a per-task list (`_task_list`) or as it is."""
    return tf.stack(x) if isinstance(x, list) else x


def _task_list(x):
    """The per-task tensors [n, ...] of x [tasks, n, ...] (or of a per-task list)."""
    return x if isinstance(x, list) else tf.unstack(x)


def _keeps_tasks_apart(task_output_shape):
    """Whether a per-task convolution's outputs stay a Python list of per-task tensors for the
    layers after it (batch norm, ReLU, max-pool work per task anyway) instead of being stacked
    into one [tasks, ...] tensor: stacking copies the activation, and its gradient (through the
    next per-task convolution's unstack) copies the activation's gradient. Kept apart from
    `TASK_LIST_MIN_ELEMENTS` per task, where that copy outweighs a few more ops per layer."""
    return math.prod(task_output_shape) >= TASK_LIST_MIN_ELEMENTS


# Per-task output elements from which per-task convolutions' outputs stay unstacked: MiniImagenet's
# first three layers on its 75-image query sets (16.9M, 4.2M, 1.1M elements per task), and from the
# second inner step on (the first step's shared convolutions are stacked) its first layer on the
# support sets (1-shot 1.1M, 5-shot 5.6M) and 5-shot's second (1.4M); Omniglot's, at most 314k,
# are stacked.
TASK_LIST_MIN_ELEMENTS = 1_000_000


def _task_step(step):
    """Mark a step as taking a per-task list too (element-wise per task, or per task anyway)."""
    step.takes_task_list = True
    return step


def _relu():
    def step(weights, x):
        if isinstance(x, list):
            return [tf.nn.relu(xt) for xt in x]
        return tf.nn.relu(x)

    step.relu = True
    return _task_step(step)


# Whether each ReLU that a max-pool follows runs after the pool (`_pool_before_relu`); read when
# a forward is built. False keeps the model's order (the same function; for measuring it).
MAX_POOL_BEFORE_RELU = True
# Whether max-pool runs before the batch norm it follows (`_pool_before_batch_norm`), after the
# ReLU swap; read when a forward is built.
MAX_POOL_BEFORE_BATCH_NORM = True


def _pool_before_relu(steps):
    """The steps with each ReLU that a max-pool follows moved after that pool.

    relu(max(window)) == max(relu(window)) for every window (ReLU is monotone and max only
    compares), so the function, and with it every derivative TensorFlow computes, is unchanged:
    max-pool routes the gradient to the same element either way, and where a window's maximum is
    not positive ReLU's gradient is zero in both orders. ReLU and its gradients then run on the
    pooled activation, a quarter of the elements with MiniImagenet's 2 x 2 pools."""
    steps = list(steps)
    for i in range(len(steps) - 1):
        if getattr(steps[i], "relu", False) and getattr(steps[i + 1], "max_pool", False):
            steps[i], steps[i + 1] = steps[i + 1], steps[i]
    return steps


def _require(condition, name, message):
    if not condition:
        raise UnsupportedModelError(f"{name}: the batched forward {message}")


def _per_task(w, base_rank):
    """True when a weight carries a leading task axis."""
    return len(w.shape) == base_rank + 1


def _channels(w, x):
    """A per-channel weight ([C] shared or [T, C] per task) shaped to broadcast against x[T, ...]."""
    if _per_task(w, 1):
        return tf.reshape(w, [w.shape[0]] + [1] * (len(x.shape) - 2) + [w.shape[-1]])
    return w


class LowRankKernel(NamedTuple):
    """A dense layer's per-task adapted kernels, kept factored rather than as a [tasks, in, out]
    tensor: base + sum_j left_j^T right_j, with `base` [in, out] shared by all tasks and each
    left_j [tasks, r, in], right_j [tasks, r, out]. An inner step of a dense layer y = x W + b
    moves W by -lr x_s^T dL/dy_s, whose rank is the support size (`maml.inner_loop`).
    The layer then computes x base + sum_j (x left_j^T) right_j: the same function, never
    materialising a kernel per task."""

    base: tf.Tensor
    left: tuple = ()
    right: tuple = ()

    def plus(self, x, d):
        """This kernel + x^T d per task (x [tasks, n, in], d [tasks, n, out]), stored as
        (x - m)^T d + m^T (1^T d) with m the mean of x's rows: rank n + 1. Equal in exact
        arithmetic; in float32 it keeps the products small. Rows of non-negative inputs share
        a large common part, and with batch norm after the layer d's rows sum to about zero,
        so x_query . x_j over the raw rows would cancel most of their digits."""
        mean = tf.reduce_mean(x, axis=1, keepdims=True)
        return LowRankKernel(self.base, self.left + (x - mean, mean),
                             self.right + (d, tf.reduce_sum(d, axis=1, keepdims=True)))


class SharedKernel(NamedTuple):
    """A convolution kernel all tasks still share, before the first inner step, with `delta`
    [tasks, *kernel.shape], zeros, standing for each task's own copy: the per-task kernels are
    kernel + delta. The layer runs one native convolution over every task's examples with the
    shared kernel, and the gradient with respect to `delta` is each task's kernel gradient
    (`_shared_conv`). So the first step's support pass convolves (and back-propagates to its
    inputs) once for the whole meta-batch instead of once per task. `delta` must be zeros: the
    convolution ignores its value (only its gradient is used), where `per_task()` adds it."""

    kernel: tf.Tensor
    delta: tf.Tensor

    def per_task(self):
        """The per-task kernels [tasks, *kernel.shape]."""
        return self.kernel + self.delta


def _dense(kernel, bias):
    def step(weights, x):
        w, b = weights[kernel], weights[bias]
        if isinstance(w, LowRankKernel):
            # The shared base as one matmul over all tasks' rows, then the per-task low-rank terms.
            tasks, n, features = x.shape
            y = tf.reshape(tf.linalg.matmul(tf.reshape(x, [tasks * n, features]), w.base), [tasks, n, w.base.shape[-1]])
            for left, right in zip(w.left, w.right):
                y = y + tf.linalg.matmul(tf.linalg.matmul(x, left, transpose_b=True), right)
        else:
            # [T, n, in] x [T, in, out] (batched) or x [in, out] (shared, broadcast over tasks).
            y = tf.linalg.matmul(x, w)
        return y + _channels(b, y)

    step.kernel = kernel
    return step


def _same_padding(size, kernel, stride):
    """TF's 'SAME' padding (before, after): the extra pixel, if any, goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv2d(kernel, bias, kernel_size, strides, method):
    kh, kw = kernel_size
    sh, sw = strides

    def step(weights, x):
        w, b = weights[kernel], weights[bias]
        tasks, n, height, width, channels = (len(x), *x[0].shape) if isinstance(x, list) else x.shape
        per_task_conv = _use_per_task_conv(method, tasks, n, height, width, channels)
        loops_over_tasks = not isinstance(w, SharedKernel) and _per_task(w, 4) and per_task_conv
        if not loops_over_tasks:
            x = _stacked(x)
        if isinstance(w, SharedKernel):
            y = _shared_conv(x, w.kernel, w.delta, (sh, sw), per_task_conv)
            return y + _channels(b, y)
        if not _per_task(w, 4):  # one kernel for all tasks: the native convolution
            y = tf.nn.conv2d(tf.reshape(x, [tasks * n, height, width, channels]), w, [1, sh, sw, 1], "SAME")
            y = tf.reshape(y, [tasks, n, *y.shape[1:]])
            return y + _channels(b, y)
        if not _per_task(b, 1):
            b = tf.broadcast_to(b, [tasks, b.shape[0]])
        if method == "grouped":
            # One native convolution with tasks x channels channels in `tasks` groups: task t's
            # input channels meet only task t's kernel.
            grouped = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]), [n, height, width, tasks * channels])
            kernels = tf.reshape(tf.transpose(w, [1, 2, 3, 0, 4]), [kh, kw, channels, tasks * w.shape[-1]])
            y = tf.nn.conv2d(grouped, kernels, [1, sh, sw, 1], "SAME")
            y = tf.transpose(tf.reshape(y, [n, *y.shape[1:3], tasks, w.shape[-1]]), [3, 0, 1, 2, 4])
            return y + b[:, None, None, None, :]
        if loops_over_tasks:
            # unstack, not x[t]: the gradient of a strided slice writes a whole zero tensor per task.
            # The bias is added per task (its gradient a reduction over trailing-major rows, not
            # over the stacked tensor's leading axes).
            outputs = [tf.nn.conv2d(xt, wt, [1, sh, sw, 1], "SAME") + bt
                       for xt, wt, bt in zip(_task_list(x), tf.unstack(w), tf.unstack(b))]
            return outputs if _keeps_tasks_apart(outputs[0].shape) else tf.stack(outputs)
        # The bias rides in the matmul as a last row of the kernel against a column of ones in
        # the patches, so that its gradient is part of the matmul's too.
        patches = _im2col(tf.reshape(x, [tasks * n, height, width, channels]), kh, kw, sh, sw)
        out_h, out_w = patches.shape[1], patches.shape[2]
        patches = tf.reshape(patches, [tasks, n * out_h * out_w, kh * kw * channels + 1])
        kernel_rows = tf.concat([tf.reshape(w, [tasks, kh * kw * channels, w.shape[-1]]), tf.expand_dims(b, 1)], axis=1)
        y = tf.linalg.matmul(patches, kernel_rows)
        return tf.reshape(y, [tasks, n, out_h, out_w, w.shape[-1]])

    step.conv_kernel = kernel
    return _task_step(step)


def calibrate_convs(model, tasks, examples, repeats=3, clock=time.perf_counter, jit_compile=False):
    """{conv layer name: fastest method} on this machine, for `tasks` tasks of `examples`
    examples (an int, or several sizes, e.g. support and query, whose times add up).

    Each convolution of the chain is timed alone on random inputs of its real shape: forward
    and the gradient with respect to its input, kernel and bias, every method of CONV_METHODS
    but 'auto' once to trace and then `repeats` times, alternating; the median decides. A method
    this TensorFlow build cannot differentiate for the layer's dtype is left out.
    Compute-bound steps differ 2-4x between hosts (AVX2, AVX-512), and so does which method
    wins, hence a measurement rather than a threshold tuned on one machine. It is a proxy: each
    layer alone and first order, whereas training differentiates the whole network twice.
    With `jit_compile` the methods are timed compiled by XLA, as the steps will run, and
    'grouped' is left out (XLA recompiles it at every call). The choice applies to per-task
    kernels, from the first inner step on; the first step's shared convolution (`SharedKernel`)
    computes its per-task kernel gradients by native filter gradients where the choice is
    'per_task' (or 'auto' picks them) and by im2col otherwise, 'grouped' included."""
    sizes = [examples] if isinstance(examples, int) else list(examples)
    candidates = [m for m in CONV_METHODS if m != "auto" and not (jit_compile and m == "grouped")]
    chosen = {}
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # tracing several functions per layer is the point here, not a retracing bug
    try:
        for layer in _layer_chain(model):
            if isinstance(layer, keras.layers.Conv2D) and type(layer) is keras.layers.Conv2D:
                chosen[layer.name] = _fastest_method(layer, tasks, sizes, candidates, repeats, clock, jit_compile)
    finally:
        logger.setLevel(level)
    return chosen


def _fastest_method(layer, tasks, sizes, candidates, repeats, clock, jit_compile=False):
    """The method of `candidates` whose median time (forward and gradients) is least for this layer."""
    _, height, width, channels = layer.input.shape
    kh, kw = layer.kernel_size
    filters = layer.filters
    rng = tf.random.Generator.from_seed(0)
    dtype = layer.kernel.dtype
    weights = [rng.normal([tasks, kh, kw, channels, filters], dtype=dtype), rng.normal([tasks, filters], dtype=dtype)]
    inputs = [rng.normal([tasks, n, height, width, channels], dtype=dtype) for n in sizes]
    times = {m: [] for m in candidates}
    timed = {}
    failure = None
    for method in candidates:
        step = _conv2d(0, 1, (kh, kw), tuple(layer.strides), method)
        timed[method] = tf.function(lambda x, step=step: _value_and_gradients(step, weights, x),
                                    jit_compile=jit_compile, autograph=False)
        try:
            for x in inputs:
                timed[method](x)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as error:
            del timed[method]  # e.g. grouped-convolution gradients outside oneDNN (float64)
            failure = error
    if not timed:
        raise UnsupportedModelError(f"layer {layer.name}: no convolution method runs here ({failure.message})")
    for _ in range(repeats):
        for method in timed:
            start = clock()
            for x in inputs:
                _ = [t.numpy() for t in timed[method](x)]
            times[method].append(clock() - start)
    return min(timed, key=lambda m: sorted(times[m])[len(times[m]) // 2])


def grouped_convolution_trains(dtype="float32"):
    """True if this TensorFlow differentiates grouped convolutions in `dtype` on this device: on
    CPU only its oneDNN kernels do (float32, TF's default), not Eigen's (float64, or with
    TF_ENABLE_ONEDNN_OPTS=0)."""
    x, w = tf.ones([1, 3, 3, 4], dtype), tf.ones([3, 3, 2, 4], dtype)
    try:
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            y = tf.reduce_sum(tf.nn.conv2d(x, w, 1, "SAME"))
        _ = [g.numpy() for g in tape.gradient(y, [x, w])]
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
        return False
    return True


def _value_and_gradients(step, weights, x):
    with tf.GradientTape() as tape:
        tape.watch([x, *weights])
        y = _stacked(step(weights, x))  # a per-task convolution may return a per-task list
        value = tf.reduce_sum(y * y)
    return [value, *tape.gradient(value, [x, *weights])]


def _shared_conv(x, kernel, delta, strides, per_task_filters):
    """conv(x[t], kernel + delta[t]) for every task t, for delta == 0 (a `SharedKernel`): one
    native 'SAME' convolution of all tasks' examples with `kernel`, differentiated by hand:

        dL/dx = conv_backprop_input(kernel, dL/dy)   (one op for all tasks, as the kernels are equal)
        dL/ddelta[t] = sum over task t's examples and positions of patch^T dL/dy
        dL/dkernel = sum_t dL/ddelta[t] = conv_backprop_filter over all tasks' examples at once

    Each is the exact derivative at delta == 0, built from differentiable ops, so an outer
    gradient (second order) differentiates through it. Task t's kernel gradient is computed as
    one native filter gradient per task (`per_task_filters`) or one batched matmul of im2col
    patches, by the same size rule as the per-task convolutions. The inner step asks for
    dL/ddelta only and the outer backward through this forward for dL/dkernel only; each is its
    own op, so the graph keeps just the one asked for (run eagerly, both are computed)."""
    tasks, n, height, width, channels = x.shape
    kh, kw, _, out = kernel.shape
    sh, sw = strides
    flat_shape = [tasks * n, height, width, channels]

    @tf.custom_gradient
    def convolve(x, kernel, delta):
        y = tf.nn.conv2d(tf.reshape(x, flat_shape), kernel, [1, sh, sw, 1], "SAME")
        out_h, out_w = y.shape[1], y.shape[2]

        def gradient(dy):
            flat_dy = tf.reshape(dy, [tasks * n, out_h, out_w, out])
            dx = tf.nn.conv2d_transpose(flat_dy, kernel, flat_shape, [1, sh, sw, 1], "SAME")
            dkernel = tf.raw_ops.Conv2DBackpropFilter(input=tf.reshape(x, flat_shape), filter_sizes=kernel.shape,
                                                      out_backprop=flat_dy, strides=[1, sh, sw, 1], padding="SAME")
            if per_task_filters:
                ddelta = tf.stack([tf.raw_ops.Conv2DBackpropFilter(
                    input=xt, filter_sizes=kernel.shape, out_backprop=dyt, strides=[1, sh, sw, 1], padding="SAME")
                    for xt, dyt in zip(tf.unstack(x), tf.unstack(dy))])
            else:
                patches = tf.reshape(_im2col(tf.reshape(x, flat_shape), kh, kw, sh, sw, bias_column=False),
                                     [tasks, n * out_h * out_w, kh * kw * channels])
                ddelta = tf.reshape(tf.linalg.matmul(patches, tf.reshape(dy, [tasks, n * out_h * out_w, out]),
                                                     transpose_a=True), delta.shape)
            return tf.reshape(dx, x.shape), dkernel, ddelta

        return tf.reshape(y, [tasks, n, out_h, out_w, out]), gradient

    return convolve(x, kernel, delta)


def _use_per_task_conv(method, tasks, n, height, width, channels):
    """'auto': a loop of native convolutions once each task's input is large (the loop's op
    overhead is then small next to im2col's copies and their gradients), else im2col."""
    if method != "auto":
        return method == "per_task"
    return n * height * width * channels >= PER_TASK_CONV_MIN_INPUT


# Per-task input elements from which 'auto' loops over tasks; measured on 2 CPU cores (TF 2.21,
# oneDNN): Omniglot 5-way 1-shot is fastest with its second layer (5 x 14 x 14 x 64 = 63k per
# task) looped and the others on im2col; 5-shot and 20-way were 1.5x slower all on im2col.
PER_TASK_CONV_MIN_INPUT = 30_000


def _im2col(x, kh, kw, sh, sw, bias_column=True):
    """[B, H, W, C] -> [B, out_h, out_w, kh*kw*C + 1]: the 'SAME' conv's input patches, (dy, dx, c),
    then a last column of ones, for a bias row in the kernel (without it: kh*kw*C).

    Strided slicing (and above all its gradient, StridedSliceGrad) is slow on CPU, so the
    padded input is viewed as [B, rows, sh, cols, sw, C] and tap (dy, dx) becomes a plain
    slice at (dy // sh, dy % sh, dx // sw, dx % sw) (`_window`): its gradient is a pad, and the
    pad's gradient a slice again, all cheap to second order.
    """
    batch, height, width, channels = x.shape
    out_h, out_w = -(-height // sh), -(-width // sw)
    rows, cols = out_h + (kh - 1) // sh, out_w + (kw - 1) // sw
    top, _ = _same_padding(height, kh, sh)
    left, _ = _same_padding(width, kw, sw)
    # Pad after up to whole blocks of the stride; positions past 'SAME's own padding are never read.
    padded = tf.pad(x, [[0, 0], [top, rows * sh - top - height], [left, cols * sw - left - width], [0, 0]])
    blocks = tf.reshape(padded, [batch, rows, sh, cols, sw, channels])
    taps = [tf.reshape(_window(blocks, [0, dy // sh, dy % sh, dx // sw, dx % sw, 0], [batch, out_h, 1, out_w, 1, channels]),
                       [batch, out_h, out_w, channels])
            for dy in range(kh) for dx in range(kw)]
    if bias_column:
        taps.append(tf.ones([batch, out_h, out_w, 1], x.dtype))
    return tf.concat(taps, axis=-1)


def _window(x, begin, size):
    """tf.slice(x, begin, size) whose gradient is always the static pad that puts the slice back.

    TensorFlow's own Slice gradient is that pad in a graph, but under XLA (`jit_compile`) it is
    an XlaDynamicUpdateSlice, which has no gradient: a second-order meta-gradient through it
    fails. The pad's gradient is a slice again, so this differentiates to any order both ways.
    """
    paddings = [[b, full - b - s] for b, s, full in zip(begin, size, x.shape)]

    @tf.custom_gradient
    def window(x):
        return tf.slice(x, begin, size), lambda upstream: tf.pad(upstream, paddings)

    return window(x)


def _batch_norm(offset):
    # Large activations (MiniImagenet's) through one XLA-compiled function per layer, called from
    # the graph: XLA fuses the statistics, the normalisation and their derivatives into a few
    # passes over memory. Small ones stay graph ops, which need no compile (seconds per traced
    # step) and run eagerly without one.
    compiled = tf.function(_blocked_batch_norm, jit_compile=True, autograph=False)
    compiled_moments = tf.function(_blocked_moments, jit_compile=True, autograph=False)

    def normalize(x, offset_value, pool):
        large = _compiles_batch_norm(x.shape)
        if pool is None:
            return (compiled if large else _batch_norm_by_matmuls)(x, offset_value)
        mean, inv_std = (compiled_moments if large else _moments_by_matmuls)(x)
        return (pool(x) - mean) * inv_std + _channels(offset_value, x)

    def step(weights, x, pool=None):
        """Batch norm of x; with `pool` (`_pool_before_batch_norm`), of pool(x) with x's statistics."""
        if isinstance(x, list):  # one task at a time, as [1, n, ...]
            offsets = tf.unstack(weights[offset]) if _per_task(weights[offset], 1) else [weights[offset]] * len(x)
            normalized = [normalize(tf.expand_dims(xt, 0), offset_t, pool) for xt, offset_t in zip(x, offsets)]
            return [tf.reshape(y, y.shape[1:]) for y in normalized]
        return normalize(x, weights[offset], pool)

    step.batch_norm = True
    return _task_step(step)


def _pool_before_batch_norm(steps):
    """The steps with each batch norm that a max-pool follows replaced by one step that pools
    first and normalises the pooled activation with the statistics of the whole one.

    Batch norm here has no scale: per task and channel it maps v to (v - mean) * rsqrt(var + eps)
    + offset, which is non-decreasing in v (also in floating point, each operation rounding
    monotonically), so max-pool commutes with it and the values are unchanged. The normalisation
    then runs on a quarter of the elements (2 x 2 pools). The derivatives are the same wherever
    the window's maximum is unique after normalising; where float32 rounding makes two entries
    of a window equal after normalising but not before, the Keras order routes the gradient to the
    first of them and this order to the larger raw value (a round-off-level tie, as between any
    two float32 implementations of the network)."""
    fused = []
    for step in steps:
        if fused and getattr(step, "max_pool", False) and getattr(fused[-1], "batch_norm", False):
            fused[-1] = _normalized_pool(fused[-1], step)
        else:
            fused.append(step)
    return fused


def _normalized_pool(batch_norm, max_pool):
    def step(weights, x):
        return batch_norm(weights, x, pool=lambda t: max_pool(weights, t))

    return _task_step(step)


# Per-task activation elements from which batch norm runs XLA-compiled. Measured on 2 CPU cores
# (TF 2.21, AVX-512): on an input of MiniImagenet's first-layer size ([4, 80, 84, 84, 32], scratch)
# the compiled function is 1.4x the graph ops forward and forward-backward; on Omniglot, whose
# per-task activations are far below this (14 x 14 x 64 per image after the first stride-2
# conv: 5-way 1-shot 63k, 20-way 1-shot 251k, 5-shot 314k), compiling every layer gained 3-7 %
# a step, less than it costs in compile time at every trace. Raise it to keep every batch norm
# as graph ops (read when a step is traced; the two differ by float32 round-off only).
BATCH_NORM_XLA_MIN_ELEMENTS = 2_000_000


def _compiles_batch_norm(shape):
    """Whether a [T, n, ...] activation is batch-normalised by the XLA-compiled function."""
    return math.prod(shape[1:]) >= BATCH_NORM_XLA_MIN_ELEMENTS


def _moments_by_matmuls(x):
    """Each task's mean and 1 / sqrt(variance + 1e-3) per channel of x [T, n, ...positions, C],
    over its examples and positions, shaped [T, 1, ..., 1, C]; the means as batched matmuls
    (`_batch_norm_by_matmuls`)."""
    return _per_channel(_statistics_by_matmuls(x)[1:], x)


def _per_channel(statistics, x):
    """Each task's per-channel statistics ([T, 1, ..., C]) shaped to broadcast against x (`_channels`)."""
    return [_channels(tf.reshape(s, [x.shape[0], x.shape[-1]]), x) for s in statistics]


def _statistics_by_matmuls(x):
    """x viewed as rows [T, M, C]: (rows - mean, mean [T, 1, C], 1 / sqrt(variance + 1e-3) [T, 1, C])."""
    rows = tf.reshape(x, [x.shape[0], -1, x.shape[-1]])
    average = tf.fill([x.shape[0], 1, rows.shape[1]], tf.constant(1 / rows.shape[1], x.dtype))
    mean = tf.linalg.matmul(average, rows)
    centered = rows - mean
    return centered, mean, tf.math.rsqrt(tf.linalg.matmul(average, tf.square(centered)) + 1e-3)


def _batch_norm_by_matmuls(x, offset):
    """Batch norm of x [T, n, ...positions, C] with each task's own statistics (over its examples
    and positions, never across tasks), eps 1e-3, plus the offset ([C] or [T, C]); x is viewed as
    [T, M, C]. The means are batched matmuls with a row of 1/M, which on CPU run faster than TF's
    reductions over a leading axis; their derivatives are matmuls too."""
    centered, _, inv_std = _statistics_by_matmuls(x)
    return tf.reshape(centered * inv_std, x.shape) + _channels(offset, x)


def _blocked_statistics(x):
    """x viewed as blocks [T, n, P, C]: (blocks - mean, mean, 1 / sqrt(variance + 1e-3)), the
    statistics [T, 1, 1, C]. Each mean is taken over an example's positions first, then over the
    examples: with this blocking a float32 mean over 564k rows per task (a [4, 80, 84, 84, 32]
    scratch input of mean 2.5) erred 5e-7 against float64, one flat reduction 2e-5 (the
    matmuls: 2.5e-6)."""
    blocks = tf.reshape(x, [x.shape[0], x.shape[1], -1, x.shape[-1]])

    def mean(t):
        return tf.reduce_mean(tf.reduce_mean(t, axis=2, keepdims=True), axis=1, keepdims=True)

    average = mean(blocks)
    centered = blocks - average
    return centered, average, tf.math.rsqrt(mean(tf.square(centered)) + 1e-3)


def _blocked_batch_norm(x, offset):
    """The same function as `_batch_norm_by_matmuls`, as reductions for XLA to fuse
    (`_blocked_statistics`)."""
    centered, _, inv_std = _blocked_statistics(x)
    return tf.reshape(centered * inv_std, x.shape) + _channels(offset, x)


def _blocked_moments(x):
    """`_moments_by_matmuls` as reductions for XLA to fuse (`_blocked_statistics`)."""
    return _per_channel(_blocked_statistics(x)[1:], x)


def _layer_norm(scale, offset):
    def step(weights, x):
        return _normalize(x, list(range(2, len(x.shape))), 1e-12) * _channels(weights[scale], x) + _channels(weights[offset], x)

    return step


def _max_pool(pool_size, strides, padding):
    def step(weights, x):
        if isinstance(x, list):
            return [tf.nn.max_pool2d(xt, pool_size, strides, padding) for xt in x]
        tasks, n = x.shape[:2]
        y = tf.nn.max_pool2d(tf.reshape(x, [tasks * n, *x.shape[2:]]), pool_size, strides, padding)
        return tf.reshape(y, [tasks, n, *y.shape[1:]])

    step.max_pool = True
    return _task_step(step)
