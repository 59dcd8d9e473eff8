"""The batched meta-learner (all tasks at once, weights with a task axis) against the per-task
reference (tests/reference_maml.py): same metrics and meta-gradients to float64 round-off, for every model family, both
orders and one or several inner steps; and against finite differences."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import batched_forward as batched_forward_module
from maml_tf import experiment, losses, models
from maml_tf.batched_forward import UnsupportedModelError, batched_forward
from maml_tf.episodes import EpisodeBatch
from maml_tf.meta_learner import MetaLearner
from reference_maml import ReferenceLearner
from test_meta_gradients import (_check_against_finite_differences, _image_batch, _mlp, _regression_batch,
                                 _tiny_conv)


def _fc_classifier(norm, seed=0):
    """The non-conv Omniglot network in miniature: images flattened, hidden layers with norm."""
    keras.utils.set_random_seed(seed)
    model = models.fc_net((4, 4, 1), (6, 5), 3, norm=norm, dtype="float64")
    rng = np.random.default_rng(seed + 1)
    for v in model.trainable_variables:
        scale = 0.3 if "kernel" in v.path else 0.2
        v.assign(rng.normal(0, scale, v.shape) + (1.0 if "scale" in v.path else 0.0))
    return model


CASES = {
    # name: (model factory, loss, batch factory, classification, update_lr)
    "sinusoid_mlp": (_mlp, losses.mse, _regression_batch, False, 0.05),
    "omniglot_conv_batch_norm": (lambda: _tiny_conv("batch_norm"), losses.summed_cross_entropy(2),
                                 lambda: _image_batch((7, 7, 1)), True, 0.1),
    "omniglot_conv_layer_norm": (lambda: _tiny_conv("layer_norm"), losses.summed_cross_entropy(2),
                                 lambda: _image_batch((7, 7, 1)), True, 0.1),
    "omniglot_conv_no_norm": (lambda: _tiny_conv("None"), losses.summed_cross_entropy(2),
                              lambda: _image_batch((7, 7, 1)), True, 0.1),
    "miniimagenet_conv_max_pool": (lambda: _tiny_conv(max_pool=True), losses.summed_cross_entropy(2),
                                   lambda: _image_batch((16, 16, 2)), True, 0.1),
    "fc_batch_norm": (lambda: _fc_classifier("batch_norm"), losses.summed_cross_entropy(2),
                      lambda: _image_batch((4, 4, 1)), True, 0.3),
    "fc_layer_norm": (lambda: _fc_classifier("layer_norm"), losses.summed_cross_entropy(2),
                      lambda: _image_batch((4, 4, 1)), True, 0.3),
}


def _learner(case, batched, **kwargs):
    """The batched MetaLearner, or (batched=False) the per-task ReferenceLearner."""
    model_fn, loss_fn, _, classification, update_lr = CASES[case]
    return (MetaLearner if batched else ReferenceLearner)(model_fn(), loss_fn, update_lr=update_lr,
                                                          classification=classification, **kwargs)


def _assert_same_gradients(reference, fast):
    """Equal up to round-off relative to the gradient's overall scale (some entries, e.g. a
    conv bias right before batch norm, are exactly zero in theory and ~1e-16 in practice)."""
    scale = max(float(np.max(np.abs(g.numpy()))) for g in reference)
    for r, f in zip(reference, fast):
        np.testing.assert_allclose(f.numpy(), r.numpy(), rtol=1e-9, atol=1e-11 * scale)


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_meta_gradients_match_reference(case, steps, first_order):
    """All tasks at once (weights with a task axis, one op per layer, losses over a task axis) gives
    each task's scores and the meta-gradient of the per-task loop over the Keras model."""
    batch = CASES[case][2]()
    results = []
    for batched in (False, True):
        learner = _learner(case, batched, num_inner_steps=steps, first_order=first_order)
        scores, grads = learner.meta_gradients(batch.support, batch.query)  # eager: tracing would dominate here
        results.append((scores._asdict(), grads))
    (ref_metrics, ref_grads), (fast_metrics, fast_grads) = results
    assert ref_metrics.keys() == fast_metrics.keys()
    for key in ref_metrics:
        assert fast_metrics[key].shape == ref_metrics[key].shape, key
        np.testing.assert_allclose(fast_metrics[key].numpy(), ref_metrics[key].numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=key)
    _assert_same_gradients(ref_grads, fast_grads)


@pytest.mark.parametrize("case,dense", [("sinusoid_mlp", "auto"), ("omniglot_conv_batch_norm", "auto"),
                                        ("miniimagenet_conv_max_pool", "auto"), ("fc_batch_norm", "materialised"),
                                        ("fc_batch_norm", "low_rank")])
def test_batched_second_order_matches_finite_differences(case, dense):
    """(First order is not a derivative of the meta-loss; it is covered by the reference match.)"""
    _check_against_finite_differences(_learner(case, True, num_inner_steps=2, dense=dense), CASES[case][2](),
                                      directions=2)


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("case", ["sinusoid_mlp", "fc_batch_norm", "fc_layer_norm", "omniglot_conv_batch_norm"])
def test_low_rank_dense_kernels_match_reference(case, steps, first_order):
    """Every dense kernel adapted in factored form (dense='low_rank': W - lr sum_j x_j^T dL/dy_j
    kept as its factors, `LowRankKernel`, dL/dy_j through a zero tap on the layer's output) gives
    each task's scores and the meta-gradient of the per-task loop over the Keras model, which
    materialises each task's kernel W - lr grad_W L: the same inner update (Algorithm 2, line 7),
    second order through x_j and dL/dy_j, first order with both stopped."""
    batch = CASES[case][2]()
    reference = _learner(case, False, num_inner_steps=steps, first_order=first_order)
    factored = _learner(case, True, num_inner_steps=steps, first_order=first_order, dense="low_rank")
    assert factored.low_rank_kernels(batch.support[0].shape[1], steps)  # the conv net: its output layer
    (ref_scores, ref_grads), (scores, grads) = (learner.meta_gradients(batch.support, batch.query)
                                                for learner in (reference, factored))
    for key, expected, got in zip(ref_scores._fields, ref_scores, scores):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    _assert_same_gradients(ref_grads, grads)


def test_low_rank_evaluation_matches_reference():
    """The test protocol's adaptation (more steps than training) with factored dense kernels:
    each task's scores after 1..4 steps as the per-task loop's."""
    batch = CASES["fc_batch_norm"][2]()
    results = [_learner("fc_batch_norm", batched, num_inner_steps=1, **({"dense": "low_rank"} if batched else {}))
               .evaluate(batch.support, batch.query, 4) for batched in (False, True)]
    for key, reference, got in zip(results[0]._fields, *results):
        np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-12, err_msg=key)


def _nonconv_learner(dense, dtype, steps=1, first_order=False):
    """The Omniglot non-conv network (784-256-128-64-64-5, batch norm) of 5-way 1-shot, seed 0."""
    keras.utils.set_random_seed(0)
    model = experiment.build_model("omniglot", conv=False, dtype=dtype)
    return experiment.build_learner(model, "omniglot", update_batch_size=1, update_lr=0.4, num_inner_steps=steps,
                                    first_order=first_order, dense=dense)


def _nonconv_batch(dtype, tasks=3, seed=0):
    """Omniglot-shaped tasks with pixels uniform on [0, 1]: non-negative inputs, as images are."""
    rng = np.random.default_rng(seed)
    images = rng.random((tasks, 10, 28, 28, 1)).astype(dtype)
    labels = np.tile(np.eye(5, dtype=dtype), (tasks, 2, 1))
    return EpisodeBatch(images[:, :5], labels[:, :5], images[:, 5:], labels[:, 5:])


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_auto_factors_the_nonconv_net_and_keeps_its_meta_gradient(first_order, monkeypatch):
    """The real non-conv network under dense='auto' with 2 inner steps (rank 12): its 784x256 and
    256x128 kernels go through `LowRankKernel.plus` at each step, the smaller ones stay
    materialised, and the scores and meta-gradient of this mix equal the all-materialised
    step's in float64."""
    batch = _nonconv_batch("float64")
    materialised = _nonconv_learner("materialised", "float64", steps=2, first_order=first_order)
    expected = materialised.meta_gradients(batch.support, batch.query)
    updates = []
    real_plus = batched_forward_module.LowRankKernel.plus
    monkeypatch.setattr(batched_forward_module.LowRankKernel, "plus",
                        lambda self, x, d: updates.append(x.shape) or real_plus(self, x, d))
    learner = _nonconv_learner("auto", "float64", steps=2, first_order=first_order)
    scores, grads = learner.meta_gradients(batch.support, batch.query)
    assert updates == [(3, 5, 784), (3, 5, 256)] * 2
    for key, e, g in zip(expected[0]._fields, expected[0], scores):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    _assert_same_gradients(expected[1], grads)


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("filters", ["per_task", "im2col"])
@pytest.mark.parametrize("case", ["omniglot_conv_batch_norm", "miniimagenet_conv_max_pool"])
def test_shared_first_step_runs_and_keeps_the_meta_gradient(case, filters, steps, first_order, monkeypatch):
    """The first inner step's support pass with the kernels shared (`SharedKernel`: one
    convolution over all tasks, each task's kernel gradient by hand, `_shared_conv`) gives the
    scores and meta-gradient of the kernels broadcast per task from the start, in float64: both
    orders, 1 and 2 steps, task kernel gradients as per-task native filter gradients or as
    im2col matmuls. A spy checks that every conv layer of the support pass went through it, in
    the first step only."""
    monkeypatch.setattr(batched_forward_module, "PER_TASK_CONV_MIN_INPUT", 0 if filters == "per_task" else 10**12)
    _, _, batch_fn, _, _ = CASES[case]
    batch = batch_fn()
    per_task = _learner(case, True, num_inner_steps=steps, first_order=first_order, shared_first_step=False)
    expected = per_task.meta_gradients(batch.support, batch.query)
    calls = []
    real = batched_forward_module._shared_conv
    monkeypatch.setattr(batched_forward_module, "_shared_conv",
                        lambda x, *args: calls.append((x.shape, args[-1])) or real(x, *args))
    learner = _learner(case, True, num_inner_steps=steps, first_order=first_order)
    scores, grads = learner.meta_gradients(batch.support, batch.query)
    conv_layers = sum(type(layer) is keras.layers.Conv2D for layer in learner.model.layers)
    assert len(calls) == conv_layers and all(per_task_filters == (filters == "per_task") for _, per_task_filters in calls)
    assert calls[0][0] == batch.support[0].shape
    for key, e, g in zip(expected[0]._fields, expected[0], scores):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    _assert_same_gradients(expected[1], grads)


@pytest.mark.parametrize("case,first_order", [("omniglot_conv_batch_norm", False), ("omniglot_conv_batch_norm", True),
                                              ("miniimagenet_conv_max_pool", False), ("fc_batch_norm", False)])
def test_compiled_batch_norm_keeps_the_meta_gradient(case, first_order, monkeypatch):
    """Batch norm through the XLA-compiled `_blocked_batch_norm` (MiniImagenet's large activations
    take it; forced here on small ones) gives the per-task reference's scores and meta-gradient in
    float64, 2 inner steps, scoring every step, in a tf.function. Spies check that it was traced
    (once per layer and shape) and that no batch norm took the graph ops."""
    monkeypatch.setattr(batched_forward_module, "BATCH_NORM_XLA_MIN_ELEMENTS", 0)
    traced = []
    for name in ("_blocked_batch_norm", "_blocked_moments"):  # the latter before a max-pool
        real = getattr(batched_forward_module, name)
        monkeypatch.setattr(batched_forward_module, name,
                            lambda x, *offset, real=real: traced.append(x.shape) or real(x, *offset))

    def uncompiled(x, *offset):
        raise AssertionError(f"a batch norm of {x.shape} took the graph ops")

    monkeypatch.setattr(batched_forward_module, "_batch_norm_by_matmuls", uncompiled)
    monkeypatch.setattr(batched_forward_module, "_moments_by_matmuls", uncompiled)
    batch = CASES[case][2]()
    expected = _learner(case, False, num_inner_steps=2, first_order=first_order).meta_gradients(batch.support, batch.query)
    learner = _learner(case, True, num_inner_steps=2, first_order=first_order)
    scores, grads = tf.function(learner.meta_gradients, autograph=False)(batch.support, batch.query)
    norms = sum(isinstance(layer, models.Normalization) for layer in learner.model.layers)
    assert len(traced) >= norms
    for key, e, g in zip(expected[0]._fields, expected[0], scores):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    _assert_same_gradients(expected[1], grads)


@pytest.mark.parametrize("case,first_order,compiled", [("miniimagenet_conv_max_pool", False, False),
                                                       ("miniimagenet_conv_max_pool", True, False),
                                                       ("miniimagenet_conv_max_pool", False, True),
                                                       ("omniglot_conv_batch_norm", False, False)])
def test_per_task_lists_keep_the_meta_gradient(case, first_order, compiled, monkeypatch):
    """Per-task convolutions whose outputs stay a list of per-task tensors through batch norm
    (graph ops, or `compiled`), ReLU and max-pool (MiniImagenet's large layers take this; forced
    here on every layer) give the per-task reference's scores and meta-gradient in float64, 2 inner
    steps, in a tf.function. A spy checks that every per-task convolution kept its outputs apart."""
    monkeypatch.setattr(batched_forward_module, "PER_TASK_CONV_MIN_INPUT", 0)
    monkeypatch.setattr(batched_forward_module, "TASK_LIST_MIN_ELEMENTS", 0)
    if compiled:
        monkeypatch.setattr(batched_forward_module, "BATCH_NORM_XLA_MIN_ELEMENTS", 0)
    kept_apart = []
    real = batched_forward_module._keeps_tasks_apart
    monkeypatch.setattr(batched_forward_module, "_keeps_tasks_apart", lambda shape: kept_apart.append(real(shape)) or True)
    # Batch norm and ReLU must take the lists one task at a time ([1, n, ...] into the statistics,
    # [n, ...] into ReLU), not have them stacked in front of them.
    normalised, relu_ranks = [], []
    for name in ("_batch_norm_by_matmuls", "_moments_by_matmuls", "_blocked_batch_norm", "_blocked_moments"):
        real_norm = getattr(batched_forward_module, name)
        monkeypatch.setattr(batched_forward_module, name,
                            lambda x, *offset, real_norm=real_norm: normalised.append(x.shape[0]) or real_norm(x, *offset))
    real_relu = tf.nn.relu
    monkeypatch.setattr(tf.nn, "relu", lambda x: relu_ranks.append(len(x.shape)) or real_relu(x))
    batch = CASES[case][2]()
    expected = _learner(case, False, num_inner_steps=2, first_order=first_order).meta_gradients(batch.support, batch.query)
    relu_ranks.clear()
    learner = _learner(case, True, num_inner_steps=2, first_order=first_order)
    scores, grads = tf.function(learner.meta_gradients, autograph=False)(batch.support, batch.query)
    assert kept_apart and all(kept_apart)
    assert 1 in normalised and 4 in relu_ranks
    for key, e, g in zip(expected[0]._fields, expected[0], scores):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    _assert_same_gradients(expected[1], grads)


def test_per_task_lists_kept_for_large_outputs_only():
    """The rule (`TASK_LIST_MIN_ELEMENTS` per task) on the per-task convolutions' real output
    shapes: MiniImagenet's first three layers on a 75-image query set and its first layer on a
    5-way 1-shot support set stay lists; its fourth layer and every Omniglot layer are stacked."""
    apart = batched_forward_module._keeps_tasks_apart
    assert apart([75, 84, 84, 32]) and apart([75, 42, 42, 32]) and apart([75, 21, 21, 32]) and apart([5, 84, 84, 32])
    assert not apart([75, 10, 10, 32]) and not apart([5, 42, 42, 32])
    assert not apart([25, 14, 14, 64]) and not apart([20, 14, 14, 64]) and not apart([25, 7, 7, 64])


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_max_pool_before_batch_norm_keeps_the_meta_gradient(first_order, monkeypatch):
    """Max-pool before batch norm, the pooled activation normalised with the whole one's
    statistics (`_pool_before_batch_norm`; max commutes with x -> (x - mean) * rsqrt(var + eps) +
    offset): the per-task reference's scores and meta-gradient (Keras order: batch norm, ReLU,
    max-pool) in float64, 2 inner steps. Spies check that every batch norm of the max-pool net
    took this path (its moments) and never normalised a whole activation."""
    moments = []
    real = batched_forward_module._moments_by_matmuls
    monkeypatch.setattr(batched_forward_module, "_moments_by_matmuls", lambda x: moments.append(x.shape) or real(x))

    def whole(x, offset):
        raise AssertionError(f"a batch norm of {x.shape} normalised the whole activation")

    monkeypatch.setattr(batched_forward_module, "_batch_norm_by_matmuls", whole)
    case = "miniimagenet_conv_max_pool"
    batch = CASES[case][2]()
    expected = _learner(case, False, num_inner_steps=2, first_order=first_order).meta_gradients(batch.support, batch.query)
    scores, grads = _learner(case, True, num_inner_steps=2, first_order=first_order).meta_gradients(batch.support,
                                                                                                    batch.query)
    assert len(moments) >= 4
    for key, e, g in zip(expected[0]._fields, expected[0], scores):
        np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-10, atol=1e-12, err_msg=key)
    _assert_same_gradients(expected[1], grads)


def test_max_pool_runs_before_relu():
    """`_pool_before_relu` moves each ReLU that a max-pool follows past the pool (relu(max) ==
    max(relu): the same function, a quarter of the ReLU's work with 2 x 2 pools), and nothing
    else; the meta-gradient tests above (reference, finite differences) run this order. A spy
    sees ReLU get the pooled activation."""
    keras.utils.set_random_seed(0)
    model = models.conv_net((16, 16, 2), 3, 4, max_pool=True, norm="batch_norm", dtype="float64")
    relu_inputs = []
    real_relu = tf.nn.relu
    forward = batched_forward(model)
    try:
        tf.nn.relu = lambda x: relu_inputs.append(tuple(x.shape)) or real_relu(x)
        forward(model.trainable_variables, np.zeros((2, 3, 16, 16, 2)))
    finally:
        tf.nn.relu = real_relu
    assert relu_inputs == [(2, 3, 8, 8, 4), (2, 3, 4, 4, 4), (2, 3, 2, 2, 4), (2, 3, 1, 1, 4)]
    steps = [lambda: None for _ in range(5)]
    steps[0].relu = steps[2].relu = True
    steps[1].max_pool = True
    reordered = batched_forward_module._pool_before_relu(steps)
    assert reordered == [steps[1], steps[0], steps[2], steps[3], steps[4]]


def test_batch_norm_compiles_the_large_activations_only():
    """The rule (`BATCH_NORM_XLA_MIN_ELEMENTS` per task), on the batch norms' real input shapes:
    MiniImagenet's first two layers on the query set (75 images) and its first layer on the 5-shot
    support set (25); not the 5-shot support set's second layer, the 1-shot support set (5), the
    smaller layers, nor any Omniglot layer (14 x 14 x 64 per image at most)."""
    compiles = batched_forward_module._compiles_batch_norm
    assert compiles([4, 75, 84, 84, 32]) and compiles([4, 75, 42, 42, 32]) and compiles([2, 25, 84, 84, 32])
    assert not compiles([2, 25, 42, 42, 32]) and not compiles([4, 5, 84, 84, 32])
    assert not compiles([4, 75, 21, 21, 32])
    assert not compiles([32, 25, 14, 14, 64]) and not compiles([16, 20, 14, 14, 64]) and not compiles([32, 5, 14, 14, 64])


@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_factored_float32_meta_gradient_is_as_accurate_as_materialised(first_order):
    """float32 against float64 on the non-conv net with non-negative inputs and batch norm: the
    factored step is as accurate as the materialised one (7.5e-6 and 1.4e-5 relative here, second
    and first order; materialised 6.7e-6 and 1.2e-5). `LowRankKernel.plus` centres the support
    rows; with x_query . x_support over the raw pixel rows it was 5.2e-5 and 9.4e-5."""
    batch64, batch32 = _nonconv_batch("float64", seed=2), _nonconv_batch("float32", seed=2)
    learners = {dense: _nonconv_learner(dense, "float32", first_order=first_order)
                for dense in ("materialised", "low_rank")}
    reference = _nonconv_learner("materialised", "float64", first_order=first_order)
    for v64, v32 in zip(reference.variables, learners["low_rank"].variables):
        v64.assign(v32.numpy().astype("float64"))  # the same weights (initialisers draw per dtype)
    exact = reference.meta_gradients(batch64.support, batch64.query)[1]
    errors = {}
    for dense, learner in learners.items():
        grads = learner.meta_gradients(batch32.support, batch32.query)[1]
        scale = max(float(np.max(np.abs(g.numpy()))) for g in exact)
        errors[dense] = max(float(np.max(np.abs(g.numpy() - e.numpy()))) for g, e in zip(grads, exact)) / scale
    assert errors["materialised"] < 1e-4, errors
    assert errors["low_rank"] < 2 * errors["materialised"], errors


def test_auto_factors_the_large_dense_kernels_only():
    """dense='auto' keeps a dense kernel factored when its factors (rank = support size x steps)
    hold at most a quarter of its elements (rank = (support size + 1) x steps): Omniglot non-conv
    5-way 1-shot (784-256-128-64-64-5, 5 support images, 1 step) factors its four hidden kernels,
    not the 64x5 output; the sinusoid (1-40-40-1, 10 points) none; 'materialised' none and
    'low_rank' all."""
    def learner(datasource, dense="auto", **options):
        model = experiment.build_model(datasource, **options)
        return experiment.build_learner(model, datasource, update_batch_size=1, update_lr=0.4, num_inner_steps=1,
                                        dense=dense)

    nonconv = learner("omniglot", conv=False)
    kernels = [i for i, v in enumerate(nonconv.variables) if "kernel" in v.path]
    assert nonconv.low_rank_kernels(5, 1) == tuple(kernels[:4])
    assert nonconv.low_rank_kernels(20, 1) == tuple(kernels[:2])  # rank 21: 784x256 and 256x128
    assert nonconv.low_rank_kernels(20, 5) == ()  # 20-way, 5 steps: rank 105
    assert learner("sinusoid", norm="None").low_rank_kernels(10, 1) == ()
    assert learner("omniglot", conv=False, dense="materialised").low_rank_kernels(5, 1) == ()
    assert learner("omniglot", conv=False, dense="low_rank").low_rank_kernels(5, 1) == tuple(kernels)
    assert learner("omniglot").low_rank_kernels(5, 1) == ()  # the conv net's 64x5 output layer
    with pytest.raises(ValueError, match="dense must be one of"):
        learner("sinusoid", norm="None", dense="factored")


@pytest.mark.parametrize("conv", ["im2col", "per_task", "grouped"])
@pytest.mark.parametrize("size,max_pool", [(28, False), (7, False), (9, False), (16, True)])
def test_forward_matches_keras_per_task(size, max_pool, conv):
    """Per-task weights for each task give exactly that task's Keras output; 'SAME' padding of
    stride-2 convs (28->14: pad 0 before, 1 after; 7->4: 1 and 1) included."""
    keras.utils.set_random_seed(0)
    model = models.conv_net((size, size, 2), 3, 4, max_pool=max_pool, norm="batch_norm", dtype="float64")
    forward = batched_forward(model, conv=conv)
    rng = np.random.default_rng(0)
    tasks = 3
    per_task = [[rng.normal(0, 0.5, v.shape) for v in model.trainable_variables] for _ in range(tasks)]
    stacked = [tf.constant(np.stack(ws)) for ws in zip(*per_task)]
    x = rng.normal(size=(tasks, 4, size, size, 2))
    got = forward(stacked, x).numpy()
    for t in range(tasks):
        expected = model.stateless_call(per_task[t], model.non_trainable_variables, x[t])[0].numpy()
        np.testing.assert_allclose(got[t], expected, rtol=1e-12, atol=1e-12)
    # Shared (unstacked) weights broadcast over tasks.
    shared = forward(per_task[0], x).numpy()
    np.testing.assert_allclose(shared[1], model.stateless_call(per_task[0], [], x[1])[0].numpy(), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("case", ["omniglot_conv_batch_norm", "miniimagenet_conv_max_pool"])
def test_per_task_convolutions_match_reference(case, monkeypatch):
    """The meta-gradient with every convolution looped over tasks ('auto' picks this for large
    inputs, which the tiny models above never reach)."""
    monkeypatch.setattr(batched_forward_module, "PER_TASK_CONV_MIN_INPUT", 0)
    batch = CASES[case][2]()
    reference = _learner(case, False, num_inner_steps=2).meta_gradients(batch.support, batch.query)[1]
    _assert_same_gradients(reference, _learner(case, True, num_inner_steps=2).meta_gradients(batch.support, batch.query)[1])


def test_grouped_and_mixed_convolutions_match_per_task():
    """The second-order meta-gradient (2 inner steps) with every convolution one grouped
    convolution, and with a per-layer mix as `calibrate_convs` returns, equals the per-task
    convolutions' to float32 round-off. Float32: TF's CPU grouped-convolution gradients exist
    only in its oneDNN kernels, which have no float64 (calibration skips a method that fails)."""
    keras.utils.set_random_seed(0)
    model = models.conv_net((7, 7, 1), 3, 4, max_pool=False, norm="batch_norm", dtype="float32")
    batch = _image_batch((7, 7, 1))
    support, query = ([tf.cast(t, tf.float32) for t in pair] for pair in (batch.support, batch.query))

    def gradients(conv):
        learner = MetaLearner(model, losses.summed_cross_entropy(2), update_lr=0.1, classification=True,
                              num_inner_steps=2, conv=conv)
        return learner.meta_gradients(support, query)[1]

    reference = gradients("per_task")
    scale = max(float(np.max(np.abs(g.numpy()))) for g in reference)
    mixed = {"conv1": "grouped", "conv2": "im2col", "conv3": "per_task", "conv4": "grouped"}
    for conv in ("grouped", mixed):
        for r, g in zip(reference, gradients(conv)):
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-4, atol=1e-5 * scale)


def test_calibration_keeps_the_fastest_method_per_layer():
    """calibrate_convs names every convolution and keeps the method with the least *median*
    time: on the fake clock one method takes 1, 1, 100 units in its three rounds (median 1,
    mean 34) and another 0.5, 5, 5 (least minimum and mean, median 5); the first is kept."""
    keras.utils.set_random_seed(0)
    model = models.conv_net((7, 7, 1), 3, 4, max_pool=False, norm="batch_norm")
    methods = [m for m in batched_forward_module.CONV_METHODS if m != "auto"]
    for fastest, decoy in zip(methods, methods[1:] + methods[:1]):
        def cost(method, round_):
            if method == fastest:
                return (1.0, 1.0, 100.0)[round_]
            return (0.5, 5.0, 5.0)[round_] if method == decoy else 10.0
        ticks = iter(np.cumsum([c for _ in range(4) for r in range(3) for m in methods for c in (0.0, cost(m, r))]))
        chosen = batched_forward_module.calibrate_convs(model, tasks=2, examples=(3, 3), repeats=3,
                                                        clock=lambda: next(ticks))
        assert chosen == {f"conv{i}": fastest for i in range(1, 5)}


def test_calibration_times_convolutions_that_keep_tasks_apart(monkeypatch):
    """calibrate_convs times a per-task convolution whose outputs stay a per-task list (as
    MiniImagenet's first layer does at its real size; forced here) and still picks a method."""
    monkeypatch.setattr(batched_forward_module, "TASK_LIST_MIN_ELEMENTS", 0)
    keras.utils.set_random_seed(0)
    model = models.conv_net((16, 16, 2), 3, 4, max_pool=True, norm="batch_norm")
    chosen = batched_forward_module.calibrate_convs(model, tasks=2, examples=3, repeats=1)
    assert sorted(chosen) == [f"conv{i}" for i in range(1, 5)]
    assert set(chosen.values()) <= set(batched_forward_module.CONV_METHODS) - {"auto"}


def test_calibration_leaves_out_what_cannot_run():
    """In float64 TF's CPU grouped convolution has no gradient: calibration times only the other
    methods (here the clock would make 'grouped' fastest) instead of failing."""
    keras.utils.set_random_seed(0)
    model = models.conv_net((7, 7, 1), 3, 4, max_pool=False, norm="batch_norm", dtype="float64")
    cost = {"im2col": 3.0, "per_task": 2.0}
    ticks = iter(np.cumsum([c for _ in range(4 * 3) for m in ("im2col", "per_task") for c in (0.0, cost[m])]))
    chosen = batched_forward_module.calibrate_convs(model, tasks=2, examples=3, repeats=3, clock=lambda: next(ticks))
    assert chosen == {f"conv{i}": "per_task" for i in range(1, 5)}


def test_conv_method_must_be_known():
    """Unknown methods and layer names are errors; an empty choice (a model without
    convolutions, as calibrate_convs returns for it) means 'auto' everywhere."""
    model = models.conv_net((7, 7, 1), 3, 4, max_pool=False, norm="batch_norm")
    with pytest.raises(ValueError, match="conv must be one of"):
        batched_forward(model, conv="fft")
    with pytest.raises(ValueError, match="conv must be one of"):
        batched_forward(model, conv={"conv1": "auto2"})
    with pytest.raises(ValueError, match=r"layers the model does not have: \['conv9'\]"):
        batched_forward(model, conv={"conv9": "im2col"})
    fc = models.fc_net((4, 4, 1), (6, 5), 3)
    assert batched_forward_module.calibrate_convs(fc, tasks=2, examples=3) == {}
    x = tf.ones([2, 3, 4, 4, 1])
    np.testing.assert_array_equal(batched_forward(fc, conv={})(fc.trainable_variables, x).numpy(),
                                  batched_forward(fc)(fc.trainable_variables, x).numpy())


def test_grouped_convolution_probe():
    """oneDNN (TF's CPU default) differentiates grouped convolutions in float32, Eigen's float64
    kernels do not: the probe main.py runs before accepting --conv_method=grouped."""
    assert batched_forward_module.grouped_convolution_trains("float32")
    assert not batched_forward_module.grouped_convolution_trains("float64")


def test_evaluate_matches_reference():
    """Scoring more steps than training uses (the test protocol's 10 after training with 1): the
    compiled evaluation (its steps 2..4 in a while loop) against the per-task loop."""
    batch = _image_batch((7, 7, 1), tasks=3)
    results = [_learner("omniglot_conv_batch_norm", batched, num_inner_steps=1).evaluate(batch.support, batch.query, 4)
               for batched in (False, True)]
    for key, reference, got in zip(results[0]._fields, *results):
        np.testing.assert_allclose(got, reference, rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("case", ["omniglot_conv_batch_norm", "miniimagenet_conv_max_pool", "fc_layer_norm",
                                  "sinusoid_mlp"])
def test_looped_evaluation_equals_the_unrolled_steps(case):
    """Evaluation's steps 2..n in a tf.while_loop (`maml.score_adaptation`) give each task the
    scores of the unrolled inner loop (`maml.adapt_and_score`: Algorithm 2, line 7, repeated),
    after every one of 5 steps: the first step with shared kernels, the loop's on per-task ones.
    Both traced (eagerly, tf.while_loop would be a Python loop)."""
    batch = CASES[case][2]()
    learner = _learner(case, True, num_inner_steps=1)
    weights = [tf.convert_to_tensor(v) for v in learner.variables]
    looped = learner._compiled_evaluate_tasks(weights, batch.support, batch.query, 5)
    unrolled = tf.function(learner.unrolled_evaluate_tasks, autograph=False)(weights, batch.support, batch.query, 5)
    assert looped.query_losses.shape == unrolled.query_losses.shape == (len(batch.support[0]), 5)
    for key, expected, got in zip(unrolled._fields, unrolled, looped):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12, atol=1e-13, err_msg=key)
    assert not np.allclose(unrolled.query_losses[:, 0], unrolled.query_losses[:, -1])  # the steps moved


def test_evaluation_graph_does_not_grow_with_the_steps():
    """The traced evaluation holds the first inner step and one loop body: 3 and 10 steps trace
    graphs of the same size, smaller than 3 unrolled steps."""
    learner = _learner("omniglot_conv_batch_norm", True, num_inner_steps=1)
    batch = CASES["omniglot_conv_batch_norm"][2]()
    weights = [tf.convert_to_tensor(v) for v in learner.variables]

    def ops(function, steps):
        graph = function.get_concrete_function(weights, batch.support, batch.query, steps).graph
        return len(graph.get_operations()) + sum(len(f.node_def) for f in graph.as_graph_def().library.function)

    looped = [ops(learner._compiled_evaluate_tasks, steps) for steps in (3, 10)]
    unrolled_function = tf.function(learner.unrolled_evaluate_tasks, autograph=False)
    unrolled = ops(unrolled_function, 3)
    assert looped[0] == looped[1] < unrolled, (looped, unrolled)


def test_batched_train_step_traces_once_and_matches_reference():
    """Three Adam meta-updates: the same mean scores and the same weights after each."""
    reference, fast = (_learner("omniglot_conv_batch_norm", batched, num_inner_steps=2) for batched in (False, True))
    for seed in range(3):
        batch = _image_batch((7, 7, 1), seed=seed)
        expected = reference._train_step(batch.support, batch.query, True)  # eagerly: tracing the loop is slow
        got = fast.train_step(batch.support, batch.query, True)
        for key, e, g in zip(expected._fields, expected, got):
            np.testing.assert_allclose(g.numpy(), e.numpy(), rtol=1e-8, err_msg=key)
    assert fast.train_step.experimental_get_tracing_count() == 1
    for a, b in zip(reference.variables, fast.variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-8, atol=1e-12)


def test_unsupported_model_fails_at_construction():
    inputs = keras.Input((5,), dtype="float64")
    outputs = keras.layers.Dense(2, dtype="float64")(keras.layers.Dropout(0.5, dtype="float64")(inputs))
    model = keras.Model(inputs, outputs)
    with pytest.raises(UnsupportedModelError, match="Dropout"):
        MetaLearner(model, losses.mse, update_lr=0.1, num_inner_steps=1)
    ReferenceLearner(model, losses.mse, update_lr=0.1, num_inner_steps=1)  # the Keras model itself still runs

    inputs = keras.Input((8, 8, 1), dtype="float64")
    conv = keras.layers.Conv2D(2, 3, padding="valid", dtype="float64")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, dtype="float64")(keras.layers.Flatten(dtype="float64")(conv)))
    with pytest.raises(UnsupportedModelError, match="same"):
        batched_forward(model)


@pytest.mark.parametrize("batched", [True, False])
def test_train_step_without_intermediate_scores_makes_the_same_update(batched):
    """score_every_step=False skips the query scores after steps 1..n-1 but updates the weights
    identically (they do not enter the meta-loss, the query loss after step n)."""
    learners = [_learner("omniglot_conv_batch_norm", batched, num_inner_steps=3) for _ in range(2)]
    batch = _image_batch((7, 7, 1))
    full = learners[0]._train_step(batch.support, batch.query, score_every_step=True)
    lean = learners[1]._train_step(batch.support, batch.query, score_every_step=False)
    np.testing.assert_allclose(lean.query_losses[-1].numpy(), full.query_losses[-1].numpy(), rtol=1e-12)
    np.testing.assert_allclose(lean.support_accuracy.numpy(), full.support_accuracy.numpy())
    # and it does skip them: only the last step's query set is scored.
    assert full.query_losses.shape == (3,) and lean.query_losses.shape == (1,)
    for a, b in zip(*(learner.variables for learner in learners)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("per_task_min_input", [0, 10**12], ids=["per_task_convs", "im2col"])
def test_float32_train_step_runs_and_agrees(per_task_min_input, monkeypatch):
    """float32 goes through oneDNN's graph rewrites, which float64 never meets (a fused conv
    bias once produced a graph cycle there); the result must still match float64: two lean
    train steps (training's graph, traced once per dtype), the second from the first's update."""
    monkeypatch.setattr(batched_forward_module, "PER_TASK_CONV_MIN_INPUT", per_task_min_input)
    batch64 = _image_batch((9, 9, 1))
    weights = [v.numpy() for v in _tiny_conv().trainable_variables]  # random biases too
    results = []
    for dtype in ("float64", "float32"):
        model = models.conv_net((9, 9, 1), 3, 3, max_pool=False, norm="batch_norm", dtype=dtype)
        for v, w in zip(model.trainable_variables, weights):
            v.assign(w.astype(dtype))
        learner = MetaLearner(model, losses.summed_cross_entropy(2), update_lr=0.1, num_inner_steps=2,
                              classification=True)
        batch = EpisodeBatch(*(np.asarray(b, dtype) for b in batch64))
        results.append([learner.train_step(batch.support, batch.query).query_losses.numpy() for _ in range(2)])
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-4)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-4)
