"""The meta-gradient is checked against float64 finite differences, first order against its
definition, and the whole thing against a closed form on a linear model."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import losses, maml, models
from maml_tf.episodes import EpisodeBatch
from maml_tf.meta_learner import MetaLearner
from maml_tf.models import stateless_forward


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    model = models.fc_net((1,), (6, 5), 1, norm="None", dtype="float64")
    # The original's 0.01-stddev init makes every gradient tiny; spread the weights so the
    # check compares numbers well away from zero.
    for v in model.trainable_variables:
        v.assign(np.random.default_rng(seed).normal(0, 0.7, v.shape))
    return model


def _tiny_conv(norm="batch_norm", max_pool=False, seed=0):
    keras.utils.set_random_seed(seed)
    shape = (16, 16, 2) if max_pool else (7, 7, 1)
    model = models.conv_net(shape, 3, 3, max_pool=max_pool, norm=norm, dtype="float64")
    # Random biases and offsets keep pre-activations off ReLU kinks: with the original's zero
    # biases a dead unit feeds exact zeros forward, where finite differences are meaningless.
    rng = np.random.default_rng(seed + 1)
    for v in model.trainable_variables:
        if "bias" in v.path or "offset" in v.path or "scale" in v.path:
            v.assign(rng.normal(0, 0.3, v.shape) + (1.0 if "scale" in v.path else 0.0))
    return model


def _regression_batch(tasks=2, k=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, (tasks, 2 * k, 1))
    y = np.sin(x) * rng.uniform(0.5, 2, (tasks, 1, 1))
    return EpisodeBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])


def _image_batch(shape, tasks=2, n=3, k=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (tasks, 2 * n * k, *shape))
    labels = np.eye(n)[np.tile(np.arange(n), 2 * k)]
    y = np.broadcast_to(labels, (tasks, *labels.shape)).copy()
    return EpisodeBatch(x[:, : n * k], y[:, : n * k], x[:, n * k:], y[:, n * k:])


def _check_against_finite_differences(learner, batch, directions=5, eps=1e-5, rtol=1e-4):
    """Directional derivatives along random directions: g.v vs central differences.

    A wrong Hessian term shows up as an O(1) relative error; truncation error here is ~1e-5.
    """
    meta_gradients = tf.function(learner.meta_gradients, autograph=False)
    _, grads = meta_gradients(batch.support, batch.query)
    rng = np.random.default_rng(42)
    originals = [v.numpy().copy() for v in learner.variables]
    for _ in range(directions):
        direction = [rng.normal(size=w.shape) for w in originals]
        analytic = sum(float(np.sum(g.numpy() * d)) for g, d in zip(grads, direction))
        values = []
        for sign in (1, -1):
            for v, w, d in zip(learner.variables, originals, direction):
                v.assign(w + sign * eps * d)
            values.append(float(np.mean(meta_gradients(batch.support, batch.query)[0].query_losses[:, -1])))
        for v, w in zip(learner.variables, originals):
            v.assign(w)
        numeric = (values[0] - values[1]) / (2 * eps)
        assert analytic == pytest.approx(numeric, rel=rtol, abs=1e-8), (analytic, numeric)


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_mlp_matches_finite_differences(steps):
    """d/dtheta of mean_T L_T^query(theta'_T(theta)) along random directions equals the central
    difference of the meta-loss: the gradient of the paper's eq. (1), Hessian terms included,
    through `steps` inner steps."""
    learner = MetaLearner(_mlp(), losses.mse, update_lr=0.05, num_inner_steps=steps)
    _check_against_finite_differences(learner, _regression_batch())


@pytest.mark.parametrize("steps", [1, 3])
@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
def test_second_order_conv_with_norm_matches_finite_differences(steps, norm):
    """As above through convolutions and per-call normalisation (whose statistics depend on
    the weights, so their second derivatives enter the meta-gradient)."""
    learner = MetaLearner(_tiny_conv(norm), losses.summed_cross_entropy(2), update_lr=0.1,
                          num_inner_steps=steps, classification=True)
    _check_against_finite_differences(learner, _image_batch((7, 7, 1)))


def test_second_order_conv_with_max_pool_matches_finite_differences():
    """As above through max-pooling (MiniImagenet's network)."""
    learner = MetaLearner(_tiny_conv(max_pool=True), losses.summed_cross_entropy(2), update_lr=0.1,
                          num_inner_steps=2, classification=True)
    _check_against_finite_differences(learner, _image_batch((16, 16, 2)))


def test_second_order_differs_from_first_order():
    """Guards the check above: the two orders must actually disagree on this problem."""
    batch = _regression_batch()
    second = MetaLearner(_mlp(), losses.mse, update_lr=0.05, num_inner_steps=2)
    first = MetaLearner(_mlp(), losses.mse, update_lr=0.05, num_inner_steps=2, first_order=True)
    g2 = np.concatenate([g.numpy().ravel() for g in second.meta_gradients(batch.support, batch.query)[1]])
    g1 = np.concatenate([g.numpy().ravel() for g in first.meta_gradients(batch.support, batch.query)[1]])
    assert np.linalg.norm(g2 - g1) > 1e-3 * np.linalg.norm(g2)


@pytest.mark.parametrize("model_fn", [_mlp, _tiny_conv])
def test_first_order_is_query_gradient_at_adapted_weights(model_fn):
    """First order (--stop_grad): the inner gradients are constants, so d theta'/d theta = I and
    the meta-gradient is mean_T d L_T^query / d theta', evaluated at each task's theta'."""
    model = model_fn()
    if model_fn is _mlp:
        loss_fn, batch, classification = losses.mse, _regression_batch(), False
    else:
        loss_fn, batch, classification = losses.summed_cross_entropy(2), _image_batch((7, 7, 1)), True
    learner = MetaLearner(model, loss_fn, update_lr=0.1, num_inner_steps=2, first_order=True,
                          classification=classification)
    _, grads = learner.meta_gradients(batch.support, batch.query)
    forward = stateless_forward(model)

    expected = [np.zeros(v.shape) for v in learner.variables]
    weights = [tf.convert_to_tensor(v) for v in learner.variables]
    tasks = batch.support_inputs.shape[0]
    for t in range(tasks):
        support = (batch.support_inputs[t], batch.support_labels[t])
        adapted = maml.inner_loop(forward, loss_fn, weights, support, 0.1, 2, adaptable=learner.adaptable)[1][-1]
        fast = [tf.constant(w) for w in adapted]
        with tf.GradientTape() as tape:
            tape.watch(fast)
            query_loss = loss_fn(forward(fast, batch.query_inputs[t]), batch.query_labels[t])
        for i, g in enumerate(tape.gradient(query_loss, fast)):
            expected[i] += g.numpy() / tasks
    for g, e in zip(grads, expected):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-10, atol=1e-12)


def test_linear_model_meta_gradient_matches_closed_form():
    """One inner step on least squares, f(x) = [x, 1] theta, L = mean squared error: with
    A, B the augmented support and query inputs, theta' = theta - alpha 2/n A^T (A theta - y_a)
    and the meta-gradient is (I - alpha 2/n A^T A)^T 2/m B^T (B theta' - y_b)."""
    keras.utils.set_random_seed(3)
    model = models.fc_net((2,), (), 1, dtype="float64")  # y = x w + b
    alpha = 0.1
    learner = MetaLearner(model, losses.mse, update_lr=alpha, num_inner_steps=1)
    rng = np.random.default_rng(0)
    xa, xb = rng.normal(size=(1, 5, 2)), rng.normal(size=(1, 7, 2))
    ya, yb = rng.normal(size=(1, 5, 1)), rng.normal(size=(1, 7, 1))
    _, grads = learner.meta_gradients((xa, ya), (xb, yb))

    theta = np.concatenate([model.trainable_variables[0].numpy().ravel(), model.trainable_variables[1].numpy()])
    aug = lambda x: np.concatenate([x[0], np.ones((x.shape[1], 1))], axis=1)  # noqa: E731
    A, B = aug(xa), aug(xb)
    n, m = A.shape[0], B.shape[0]
    theta_prime = theta - alpha * 2 / n * A.T @ (A @ theta - ya[0, :, 0])
    jacobian = np.eye(3) - alpha * 2 / n * A.T @ A
    expected = jacobian.T @ (2 / m * B.T @ (B @ theta_prime - yb[0, :, 0]))
    got = np.concatenate([grads[0].numpy().ravel(), grads[1].numpy()])
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize("norm", ["batch_norm", "layer_norm"])
def test_norm_parameters_get_no_inner_update(norm):
    """The original adapted only its `weights` dict: normalisation offsets/scales keep their
    values through the inner loop, yet the outer step gives them a non-zero gradient."""
    model = _tiny_conv(norm)
    loss_fn = losses.summed_cross_entropy(2)
    learner = MetaLearner(model, loss_fn, update_lr=10.0, num_inner_steps=3, classification=True)
    batch = _image_batch((7, 7, 1))
    weights = [tf.convert_to_tensor(v) for v in learner.variables]
    support = (batch.support_inputs[0], batch.support_labels[0])
    fast = maml.inner_loop(stateless_forward(model), loss_fn, weights, support, 10.0, 3, adaptable=learner.adaptable)[1][-1]
    for v, w, f in zip(learner.variables, weights, fast):
        if models.is_norm_variable(model, v):
            np.testing.assert_array_equal(f.numpy(), w.numpy())
        elif "kernel" in v.path or v.path == "output/bias":
            # (a conv bias right before batch norm has an exactly zero gradient: BN cancels it)
            assert not np.allclose(f.numpy(), w.numpy()), v.path
    # ...but the outer step does update them.
    _, grads = learner.meta_gradients(batch.support, batch.query)
    norm_grads = [g for v, g in zip(learner.variables, grads) if models.is_norm_variable(model, v)]
    assert norm_grads and all(np.abs(g.numpy()).max() > 0 for g in norm_grads)


def test_batch_norm_uses_statistics_of_each_call():
    """Same input -> same output whatever else was normalised before (no moving averages), and
    each task is normalised with its own statistics."""
    model = _tiny_conv("batch_norm")
    x = np.random.default_rng(0).normal(size=(4, 7, 7, 1))
    first = model(x).numpy()
    model(x * 10 + 3)
    np.testing.assert_allclose(model(x).numpy(), first)
    assert not np.allclose(model(x[:2]).numpy(), first[:2])


def test_train_step_traces_once():
    """New batches of the same shape reuse the compiled step."""
    learner = MetaLearner(_mlp(), losses.mse, update_lr=0.01, num_inner_steps=1)
    for seed in range(4):
        batch = _regression_batch(seed=seed)
        learner.train_step(batch.support, batch.query)
    assert learner.train_step.experimental_get_tracing_count() == 1


def test_clip_bounds_every_gradient_element():
    """MiniImagenet's clip: Adam sees gradients within [-c, c] (checked via its first moment)."""
    learner = MetaLearner(_mlp(), losses.mse, update_lr=0.01, num_inner_steps=1, clip_value=1e-4)
    batch = _regression_batch()
    learner.train_step(batch.support, batch.query)
    # After one Adam step m = (1 - beta1) g, so |m| <= 0.1 * clip.
    moments = [m.numpy() for m in learner.meta_optimizer._momentums]
    assert max(np.abs(m).max() for m in moments) <= 0.1 * 1e-4 * (1 + 1e-9)


def test_only_miniimagenet_meta_updates_are_clipped_and_never_the_pretraining():
    """The original (maml.py): `if FLAGS.datasource == 'miniimagenet': gvs = [(tf.clip_by_value(
    grad, -10, 10), var) ...]` before metatrain_op's Adam; pretrain_op = AdamOptimizer(meta_lr)
    .minimize(total_loss1), unclipped. Adam's first moment after one step is 0.1 g: a gradient
    of 50 leaves 1.0 clipped, 5.0 not."""
    from maml_tf import experiment

    def first_moment(datasource, pretrain):
        learner = experiment.build_learner(_mlp(), datasource, update_batch_size=1, update_lr=0.01,
                                           num_inner_steps=1)
        gradients = [tf.fill(v.shape, tf.constant(50.0, v.dtype)) for v in learner.variables]
        (learner.apply_pretrain_gradients if pretrain else learner.apply_meta_gradients)(gradients)
        optimizer = learner.pretrain_optimizer if pretrain else learner.meta_optimizer
        return np.concatenate([m.numpy().ravel() for m in optimizer._momentums])

    np.testing.assert_allclose(first_moment("miniimagenet", pretrain=False), 1.0, rtol=1e-6)
    np.testing.assert_allclose(first_moment("miniimagenet", pretrain=True), 5.0, rtol=1e-6)
    for datasource in ("omniglot", "sinusoid"):
        np.testing.assert_allclose(first_moment(datasource, pretrain=False), 5.0, rtol=1e-6)


def test_tf_nn_moments_would_give_wrong_second_derivatives():
    """Why norm.py computes its own moments: with tf.nn.moments the Hessian of a function of the
    variance is wrong (it treats the mean as a constant inside the variance)."""
    x = tf.constant(np.random.default_rng(0).normal(size=8))

    def hessian_diagonal(variance_fn):
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                value = tf.square(variance_fn(x))
            grad = inner.gradient(value, x)
        return outer.jacobian(grad, x).numpy().diagonal()

    exact = hessian_diagonal(lambda v: tf.reduce_mean(tf.square(v - tf.reduce_mean(v))))
    moments = hessian_diagonal(lambda v: tf.nn.moments(v, axes=[0])[1])
    assert not np.allclose(exact, moments)
