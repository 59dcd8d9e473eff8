"""A PyTorch peer of our meta-step, for benchmarks/meta_step.py: the same networks, losses,
batch norm, inner and outer steps, Adam and clip as `maml_tf` (itself the original cbfinn/maml),
written the two ways PyTorch users write MAML:

- "vmap": `torch.func` — `functional_call` on the network with the fast weights, `vmap` over
  the tasks of the meta-batch, `grad` for the inner gradient and again for the meta-gradient;
- "loop": a Python loop over tasks, `torch.autograd.grad(create_graph=True)` for the inner
  gradient and one `backward()` per task accumulating the meta-gradient.

Nothing here is a dependency of maml_tf: torch comes from the optional `bench` extra
(`pip install -e .[bench]`). `compare_with_ours` checks the peer against our
`MetaLearner.meta_gradients` on the same weights and inputs; TensorFlow is imported only there.

Layouts: inputs and activations are NCHW as usual in PyTorch; conv kernels are OIHW (ours are
HWIO, converted on the way in and out); dense kernels keep our [in, out] layout (x @ W + b).
Parameter names are ours with '.' for '/' (`conv1.kernel`, `norm1.offset`, `output.bias`).
"""
import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

VARIANTS = ("vmap", "loop")

# The original clipped each MiniImagenet meta-gradient element to [-10, 10] (maml_tf.experiment.CLIP_VALUE).
CLIP_VALUE = {"miniimagenet": 10.0}


# ----------------------------------------------------------------------------------------------
# The networks (maml_tf/models.py, the original's construct_*_weights / forward_*)
# ----------------------------------------------------------------------------------------------

class Dense(nn.Module):
    """keras.layers.Dense (linear, with bias): x @ kernel + bias, kernel [in, out] as ours."""

    def __init__(self, inputs, units):
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(inputs, units))
        self.bias = nn.Parameter(torch.zeros(units))

    def forward(self, x):
        return x @ self.kernel + self.bias


def same_padding(size, kernel, stride):
    """TF's 'SAME' padding (before, after) of one spatial axis: the odd pixel goes after
    (maml_tf.batched_forward._same_padding). PyTorch's own padding is symmetric, hence F.pad."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv(nn.Module):
    """The original's `tf.nn.conv2d(x, w, stride, 'SAME') + b` (keras Conv2D, padding 'same'),
    NCHW with an OIHW kernel."""

    def __init__(self, in_channels, filters, stride, size):
        super().__init__()
        self.kernel = nn.Parameter(torch.zeros(filters, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(filters))
        self.stride = stride
        top, bottom = same_padding(size, 3, stride)
        self.padding = (top, bottom, top, bottom)  # F.pad order: (left, right, top, bottom); square inputs

    def forward(self, x):
        return F.conv2d(F.pad(x, self.padding), self.kernel, self.bias, self.stride)


class BatchNorm(nn.Module):
    """maml_tf.norm.Normalization('batch_norm'), the original's contrib batch_norm in training
    mode: statistics of this call over every axis but the channel (dim 1), never pooled across
    tasks (each task is its own call, or its own vmap slice), biased variance, eps 1e-3, an
    offset and no scale, no running averages. Moments computed directly (exact second
    derivatives)."""

    def __init__(self, channels):
        super().__init__()
        self.offset = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        axes = [0] + list(range(2, x.dim()))
        centered = x - x.mean(dim=axes, keepdim=True)
        variance = centered.square().mean(dim=axes, keepdim=True)
        shape = [1, -1] + [1] * (x.dim() - 2)
        return centered * torch.rsqrt(variance + 1e-3) + self.offset.reshape(shape)


class FlattenHWC(nn.Module):
    """keras Flatten of a channels-last map: row-major (h, w, c), so that the 800-row output
    kernel is ours unchanged."""

    def forward(self, x):
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class SpatialMean(nn.Module):
    """GlobalAveragePooling2D: the Omniglot conv net's mean over the spatial axes."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def fc_net(inputs, hidden, outputs, norm):
    """models.fc_net: [Dense -> (BatchNorm) -> ReLU] per hidden layer, then Dense; images are
    flattened row-major first (Omniglot's 28 x 28 x 1 is the same in NCHW and NHWC)."""
    layers = OrderedDict()
    if inputs > 1:
        layers["flatten"] = nn.Flatten()
    sizes = [inputs] + list(hidden)
    for i in range(len(hidden)):
        layers[f"dense{i + 1}"] = Dense(sizes[i], sizes[i + 1])
        if norm == "batch_norm":
            layers[f"norm{i + 1}"] = BatchNorm(sizes[i + 1])
        layers[f"relu{i + 1}"] = nn.ReLU()
    layers[f"dense{len(hidden) + 1}"] = Dense(sizes[-1], outputs)
    return nn.Sequential(layers)


def conv_net(image_size, channels, classes, filters, max_pool):
    """models.conv_net (the original's forward_conv): four [3x3 conv 'SAME' -> BatchNorm -> ReLU]
    blocks, stride 2 without pooling (Omniglot, then the spatial mean) or stride 1 with a 2x2
    max-pool 'VALID' (MiniImagenet, then the (h, w, c) flatten), then the output Dense."""
    layers = OrderedDict()
    size, inputs = image_size, channels
    for i in range(4):
        stride = 1 if max_pool else 2
        layers[f"conv{i + 1}"] = Conv(inputs, filters, stride, size)
        layers[f"norm{i + 1}"] = BatchNorm(filters)
        layers[f"relu{i + 1}"] = nn.ReLU()
        size, inputs = -(-size // stride), filters
        if max_pool:
            layers[f"pool{i + 1}"] = nn.MaxPool2d(2, 2)
            size //= 2
    layers["flatten"] = FlattenHWC() if max_pool else SpatialMean()
    layers["output"] = Dense(filters * size * size if max_pool else filters, classes)
    return nn.Sequential(layers)


def build_network(config):
    """The network of a benchmarks/meta_step.py configuration
    (datasource, N, tasks, K, query per class, inner steps, alpha, model options), as
    maml_tf.experiment.build_model builds it."""
    datasource, classes, _, _, _, _, _, options = config
    norm = options.get("norm", "batch_norm")
    if norm not in ("batch_norm", "None"):
        raise ValueError(f"the torch peer implements batch norm or none, not {norm!r}")
    if datasource == "sinusoid":
        return fc_net(1, (40, 40), 1, norm)
    size, channels = (28, 1) if datasource == "omniglot" else (84, 3)
    if not options.get("conv", True):
        return fc_net(size * size * channels, (256, 128, 64, 64), classes, norm)
    return conv_net(size, channels, classes, options.get("num_filters", 64), options.get("max_pool", False))


# ----------------------------------------------------------------------------------------------
# Losses (maml_tf/losses.py, the original's utils.mse / utils.xent)
# ----------------------------------------------------------------------------------------------

def mse(predictions, labels):
    """losses.mse: mean squared error over the task's points."""
    return (predictions.reshape(-1) - labels.reshape(-1)).square().mean()


def summed_cross_entropy(shots):
    """losses.summed_cross_entropy: softmax cross-entropy summed over the set, divided by K."""

    def loss(logits, labels):
        return -(labels * F.log_softmax(logits, dim=-1)).sum() / shots

    return loss


def accuracy(logits, labels):
    return (logits.argmax(-1) == labels.argmax(-1)).to(logits.dtype).mean()


# ----------------------------------------------------------------------------------------------
# The meta-learner (maml_tf/meta_learner.py + maml_tf/maml.py)
# ----------------------------------------------------------------------------------------------

def _is_adaptable(name):
    """Every kernel and bias; batch-norm offsets are left to the outer step (maml.py's `adaptable`)."""
    return not name.split(".")[0].startswith("norm")


class TorchMetaLearner:
    """MetaLearner.train_step in PyTorch: `num_inner_steps` SGD steps with alpha on the support
    loss (second order, or first order with detached inner gradients), the query set scored after
    every step (or the last only), the meta-objective the mean over tasks of the last step's query
    loss, then Adam (lr meta_lr, betas 0.9 / 0.999, eps 1e-8) on the element-wise clipped
    meta-gradient. `variant` is "vmap" (torch.func) or "loop" (per-task autograd). (torch's Adam
    adds eps to the bias-corrected sqrt(v), Keras' to the raw one: a difference of order eps in
    the update, which neither the check, on meta-gradients, nor the timing sees.)"""

    def __init__(self, config, weights, *, first_order, variant, meta_lr=1e-3, dtype=torch.float32):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        datasource, _, _, shots, _, steps, alpha, _ = config
        self.network = build_network(config).to(dtype)
        self.loss = mse if datasource == "sinusoid" else summed_cross_entropy(shots)
        self.classification = datasource != "sinusoid"
        self.steps, self.alpha, self.first_order, self.variant = steps, alpha, first_order, variant
        self.clip_value = CLIP_VALUE.get(datasource)
        names = [name for name, _ in self.network.named_parameters()]
        if sorted(names) != sorted(weights):
            raise ValueError(f"weights {sorted(weights)} do not match the network's {sorted(names)}")
        self.params = {name: weights[name].detach().clone().to(dtype).requires_grad_(True) for name in names}
        self.adaptable = [name for name in names if _is_adaptable(name)]
        self.optimizer = torch.optim.Adam(self.params.values(), lr=meta_lr, betas=(0.9, 0.999), eps=1e-8)

    # -- one task (maml.adapt_and_score) --------------------------------------------------------

    def _forward(self, weights, x):
        return functional_call(self.network, weights, (x,))

    def _accuracy(self, outputs, labels):
        return accuracy(outputs, labels) if self.classification else outputs.new_zeros(())

    def _inner_gradients_func(self, fast, frozen, x, y):
        """torch.func: d support loss / d fast weights, with the support outputs."""

        def support_loss(adapted):
            outputs = self._forward({**adapted, **frozen}, x)
            return self.loss(outputs, y), outputs

        gradients, outputs = grad(support_loss, has_aux=True)(fast)
        if self.first_order:
            gradients = {name: g.detach() for name, g in gradients.items()}
        return gradients, outputs

    def _inner_gradients_autograd(self, fast, frozen, x, y):
        """torch.autograd: d support loss / d fast weights (kept in the graph for second order)."""
        outputs = self._forward({**fast, **frozen}, x)
        values = torch.autograd.grad(self.loss(outputs, y), list(fast.values()), create_graph=not self.first_order)
        return dict(zip(fast, values)), outputs

    def _adapt_task(self, params, support_x, support_y, query_x, query_y, score_every_step):
        """One task: inner steps theta' <- theta' - alpha grad L_support(theta'), then the query
        scored. Returns (last step's query loss, (support loss, support accuracy,
        [steps] query losses, [steps] query accuracies))."""
        inner = self._inner_gradients_func if self.variant == "vmap" else self._inner_gradients_autograd
        frozen = {name: w for name, w in params.items() if name not in self.adaptable}
        fast = {name: params[name] for name in self.adaptable}
        query_losses, query_accuracies, support_outputs = [], [], None
        for step in range(self.steps):
            gradients, outputs = inner(fast, frozen, support_x, support_y)
            support_outputs = outputs if support_outputs is None else support_outputs
            fast = {name: w - self.alpha * gradients[name] for name, w in fast.items()}
            if score_every_step or step == self.steps - 1:
                query_outputs = self._forward({**fast, **frozen}, query_x)
                query_losses.append(self.loss(query_outputs, query_y))
                query_accuracies.append(self._accuracy(query_outputs, query_y))
        scores = (self.loss(support_outputs, support_y).detach(), self._accuracy(support_outputs, support_y),
                  torch.stack(query_losses).detach(), torch.stack(query_accuracies))
        return query_losses[-1], scores

    # -- the meta-batch (maml.meta_gradients) ---------------------------------------------------

    def meta_gradients(self, support, query, score_every_step=True):
        """(mean scores over tasks, {name: d outer loss / d theta}); the outer loss is the mean
        over tasks of the last step's query loss (maml.outer_loss)."""
        if self.variant == "vmap":
            return self._meta_gradients_vmap(support, query, score_every_step)
        return self._meta_gradients_loop(support, query, score_every_step)

    def _meta_gradients_vmap(self, support, query, score_every_step):
        def objective(params):
            task = lambda *data: self._adapt_task(params, *data, score_every_step)  # noqa: E731
            final_losses, scores = vmap(task)(*support, *query)
            return final_losses.mean(), scores

        params = {name: p.detach() for name, p in self.params.items()}
        gradients, scores = grad(objective, has_aux=True)(params)
        return tuple(s.mean(0) for s in scores), gradients

    def _meta_gradients_loop(self, support, query, score_every_step):
        for p in self.params.values():
            p.grad = None
        tasks = support[0].shape[0]
        per_task = []
        for t in range(tasks):
            final_loss, scores = self._adapt_task(self.params, support[0][t], support[1][t], query[0][t],
                                                  query[1][t], score_every_step)
            (final_loss / tasks).backward()  # frees this task's graph before the next one is built
            per_task.append(scores)
        gradients = {name: p.grad for name, p in self.params.items()}
        return tuple(torch.stack(s).mean(0) for s in zip(*per_task)), gradients

    # -- the meta-update (MetaLearner.apply_meta_gradients) -------------------------------------

    def train_step(self, support, query, score_every_step=True):
        """One meta-update: Adam on the (clipped) meta-gradient; returns the mean scores."""
        scores, gradients = self.meta_gradients(support, query, score_every_step)
        for name, p in self.params.items():
            g = gradients[name]
            p.grad = g.clamp(-self.clip_value, self.clip_value) if self.clip_value is not None else g
        self.optimizer.step()
        return scores


# ----------------------------------------------------------------------------------------------
# Conversions and the check against ours
# ----------------------------------------------------------------------------------------------

def to_torch_name(path):
    """'conv1/kernel' (our variable path) -> 'conv1.kernel'."""
    return path.replace("/", ".")


def _is_conv_kernel(name, value):
    return name.endswith("kernel") and value.ndim == 4


def weights_to_torch(named_weights, dtype=torch.float32):
    """{our variable path: array in our layout} -> {torch name: tensor}; HWIO -> OIHW."""
    out = {}
    for path, value in named_weights.items():
        value = np.asarray(value)
        if _is_conv_kernel(path, value):
            value = value.transpose(3, 2, 0, 1)
        out[to_torch_name(path)] = torch.tensor(np.ascontiguousarray(value), dtype=dtype)
    return out


def gradients_to_ours(gradients):
    """{torch name: tensor} -> {our variable path: numpy array in our layout}; OIHW -> HWIO."""
    out = {}
    for name, value in gradients.items():
        value = value.detach().cpu().numpy()
        if _is_conv_kernel(name, value):
            value = value.transpose(2, 3, 1, 0)
        out[name.replace(".", "/")] = value
    return out


def batch_to_torch(batch, dtype=torch.float32):
    """(support x, support y, query x, query y) as numpy in our layout ([tasks, n, H, W, C]) ->
    ((x, y), (x, y)) torch tensors, images [tasks, n, C, H, W]: a permuted view of the NHWC
    data, so that each task's images are channels_last in memory, oneDNN's preferred layout
    (no copy; the MiniImagenet loop runs about 25 % faster than on contiguous NCHW)."""
    def images(x):
        x = torch.tensor(np.asarray(x), dtype=dtype)
        return x.permute(0, 1, 4, 2, 3) if x.dim() == 5 else x

    xs, ys, xq, yq = (images(a) for a in batch)
    return (xs, ys), (xq, yq)


def configure(threads):
    """Torch set up as TensorFlow runs: `threads` intra-op threads, denormals flushed to zero
    (TensorFlow sets flush-to-zero in its threads), full-precision float32 products."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.set_float32_matmul_precision("highest")


def learner_from_weights(config, named_weights, *, first_order, variant, meta_lr=1e-3, dtype=torch.float32):
    """A TorchMetaLearner on our weights ({variable path: array in our layout})."""
    return TorchMetaLearner(config, weights_to_torch(named_weights, dtype), first_order=first_order, variant=variant,
                            meta_lr=meta_lr, dtype=dtype)


def max_relative_difference(reference, other):
    """max |other - reference| / max |reference| over all elements of all variables: the
    infinity-norm relative error of the whole meta-gradient. (Per variable it would be
    meaningless for the conv / dense biases that feed batch norm: their meta-gradient is exactly
    zero, batch norm subtracts them out, and holds nothing but round-off.)"""
    error = max(float(np.max(np.abs(np.asarray(other[path], np.float64) - np.asarray(value, np.float64))))
                for path, value in reference.items())
    scale = max(float(np.max(np.abs(np.asarray(value, np.float64)))) for value in reference.values())
    return error / scale if scale > 0 else error


def our_meta_gradients(learner, batch):
    """{variable path: numpy} from our MetaLearner.meta_gradients (compiled, every step scored)."""
    import tensorflow as tf

    _, gradients = tf.function(learner.meta_gradients, autograph=False)(batch[:2], batch[2:])
    return {v.path: g.numpy() for v, g in zip(learner.variables, gradients)}


def peer_meta_gradients(config, named_weights, batch, first_order, variant, dtype):
    """{variable path: numpy} from the torch peer on our weights ({path: array}), in `dtype`."""
    support, query = batch_to_torch(batch, dtype)
    peer = learner_from_weights(config, named_weights, first_order=first_order, variant=variant, dtype=dtype)
    return gradients_to_ours(peer.meta_gradients(support, query)[1])


def check_batch(config, batch):
    """What the check runs on: the timed batch's first four tasks, whole (several tasks keep the
    per-task batch statistics and vmap's task axis checked); for MiniImagenet its first task with
    one query image per class (float64 second-order torch.func on two MiniImagenet 5-shot tasks
    needs 12 GB). Query rows are sample-major: the first N hold one image of each class."""
    if config[0] != "miniimagenet":
        return tuple(np.asarray(a)[:4] for a in batch)
    xs, ys, xq, yq = (np.asarray(a)[:1] for a in batch)
    return xs, ys, xq[:, :config[1]], yq[:, :config[1]]


# The peer agrees with ours when, from the same weights and inputs, its float64 meta-gradient is
# ours to this (observed: 1e-16 to 5e-13): the same function.
FLOAT64_TOLERANCE = 1e-9
# In float32 no tolerance would be meaningful. Both implementations differ from the float64
# meta-gradient by round-off, amplified wherever round-off flips a ReLU gate (a pre-activation
# within about 1e-7 of zero: among the millions of a meta-batch a few are). The inner gradient,
# the adapted weights and so the meta-gradient then change discontinuously: by up to a few 1e-2
# of its scale in the Omniglot conv nets, by 1e-1 to 1 in MiniImagenet's five inner steps, which
# on random inputs and weights are chaotic (the query loss jumps from 13 to 650 after one step);
# ours as much as the peer, each flipping other gates. Without a flip the two agree to a few 1e-6.
# So the float32 errors are reported next to ours (`compare_with_ours`), and float32 is kept
# honest by requiring full-precision products.


def compare_with_ours(config, ours32, ours64, batch, variants=VARIANTS):
    """The peer checked against ours on `check_batch(batch)` from the same weights: `ours32` is
    the timed float32 MetaLearner, `ours64` the same model in float64 with the same weights.
    Returns (relative differences as `max_relative_difference`)
    {"float64": {variant: float64 peer against float64 ours},
     "float32": {variant: float32 peer against float64 ours},
     "ours_float32": float32 ours against float64 ours,
     "agrees": {variant: float64 difference <= FLOAT64_TOLERANCE}}:
    the float32 errors of both against the same float64 meta-gradient. Weights are untouched.
    The torch runs go first: torch returns its memory, TensorFlow keeps its pool."""
    if torch.get_float32_matmul_precision() != "highest":
        raise RuntimeError("torch float32 matmul precision must be 'highest' (no reduced-precision products)")
    batch32 = check_batch(config, batch)
    batch64 = tuple(a.astype(np.float64) for a in batch32)
    weights = {v.path: v.numpy() for v in ours32.variables}
    first_order = ours32.first_order
    peer = {(variant, dtype): peer_meta_gradients(config, weights, b, first_order, variant, dtype)
            for variant in variants for dtype, b in ((torch.float64, batch64), (torch.float32, batch32))}
    ours = {torch.float32: our_meta_gradients(ours32, batch32), torch.float64: our_meta_gradients(ours64, batch64)}
    result = {"float64": {}, "float32": {}, "agrees": {},
              "ours_float32": max_relative_difference(ours[torch.float64], ours[torch.float32])}
    for variant in variants:
        result["float64"][variant] = max_relative_difference(ours[torch.float64], peer[variant, torch.float64])
        result["float32"][variant] = max_relative_difference(ours[torch.float64], peer[variant, torch.float32])
        result["agrees"][variant] = result["float64"][variant] <= FLOAT64_TOLERANCE
    return result


# ----------------------------------------------------------------------------------------------
# Analytic FLOPs of one meta-step
# ----------------------------------------------------------------------------------------------

def layer_flops(config):
    """Forward FLOPs per example of each conv / dense layer (2 x multiply-adds), in order.
    Batch norm, ReLU, pooling, losses and im2col copies are not counted."""
    network = build_network(config)
    datasource = config[0]
    size = {"sinusoid": 1, "omniglot": 28, "miniimagenet": 84}[datasource]
    flops = []
    for module in network:
        if isinstance(module, Conv):
            size = -(-size // module.stride)
            filters, channels, kh, kw = module.kernel.shape
            flops.append(2 * size * size * kh * kw * channels * filters)
        elif isinstance(module, nn.MaxPool2d):
            size //= 2
        elif isinstance(module, Dense):
            flops.append(2 * math.prod(module.kernel.shape))
    return flops


def meta_step_flops(config, first_order, score_every_step=True):
    """FLOPs of one meta-step counted analytically from the architecture (conv / dense products
    only). With F_l the forward FLOPs of layer l (per example, times the set's size and the
    tasks), and a product's reverse costing one product per operand that depends on theta (the
    first layer's input does not):

    - per inner step: forward F_l, backward F_l (kernel) + F_l (input, l > 1);
    - second order only, per inner step: the outer pass reverses those three products, 2 F_l
      each for l > 1 (both operands depend on theta), F_l each for the first layer's two;
    - the query forward after every inner step (or the last only);
    - the outer backward of the last query forward: F_l (kernel) + F_l (input, l > 1).

    Against the conv and matmul products in our compiled meta-gradient graph (batch-norm means
    aside) this is 2 % to 5 % lower: the graph adds im2col's bias column and keeps the first
    layer's input gradients, which the runtime prunes.
    """
    _, classes, tasks, shots, query_per_class, steps, _, _ = config
    n_support = shots * classes if config[0] != "sinusoid" else shots
    n_query = query_per_class * classes if config[0] != "sinusoid" else query_per_class
    total = 0
    for layer, f in enumerate(layer_flops(config)):
        later = 1 if layer > 0 else 0
        inner = f * (2 + later)
        reverse_inner = 0 if first_order else f * (2 + 4 * later)
        support = steps * (inner + reverse_inner) * n_support
        query = (steps if score_every_step else 1) * f * n_query + f * (1 + later) * n_query
        total += support + query
    return total * tasks
