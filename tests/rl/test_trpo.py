"""The TRPO step's pieces: conjugate gradient, the finite-difference Hessian-vector product
(against the exact one of the MAML KL, float64), the line search, and a whole step on a
quadratic with a closed-form answer."""
import numpy as np
import tensorflow as tf

from rl.trpo import (ConjugateGradientOptimizer, backtracking_line_search, conjugate_gradient,
                     finite_difference_hvp)


class NumpyTarget:
    """A TRPO target (get_flat/set_flat) holding a numpy vector."""

    def __init__(self, theta):
        self.theta = np.array(theta, dtype=np.float64)

    def get_flat(self):
        return self.theta.copy()

    def set_flat(self, flat):
        self.theta = np.array(flat, dtype=np.float64)


def test_cg_solves_spd_system():
    """10 iterations solve an 8x8 SPD system to 1e-5."""
    rng = np.random.default_rng(0)
    m = rng.normal(size=(8, 8))
    a = m @ m.T + 8 * np.eye(8)
    b = rng.normal(size=8)
    x = conjugate_gradient(lambda v: a @ v, b, iters=10)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-5)


def test_cg_stops_early_on_small_residual():
    """With H = 2I one iteration is exact and the residual test stops the loop."""
    calls = []
    x = conjugate_gradient(lambda v: calls.append(1) or 2.0 * v, np.ones(5), iters=10)
    np.testing.assert_allclose(x, 0.5 * np.ones(5))
    assert len(calls) == 1


def test_fd_hvp_matches_exact_hvp_of_maml_kl(small_learner, synthetic_data):
    """The finite-difference Hessian-vector product of the meta KL (through the inner step)
    equals the exact one by double backpropagation (float64, rtol 1e-4), puts the parameters
    back, and damping adds exactly damping * v."""
    ml = small_learner
    policy = ml.policy
    rng = np.random.default_rng(1)
    support = synthetic_data(rng, 3, 7)
    query = synthetic_data(rng, 3, 7)
    v = rng.normal(size=policy.get_flat().shape)
    v_parts = [tf.constant(p) for p in np.split(v, np.cumsum([np.prod(s) for s in policy.shapes])[:-1])]

    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            kl = ml.compiled_surrogate_and_kl(support, query)[1]
        grads = inner.gradient(kl, policy.params)
        gv = tf.add_n([tf.reduce_sum(g * tf.reshape(p, g.shape)) for g, p in zip(grads, v_parts)])
    exact = np.concatenate([h.numpy().ravel() for h in outer.gradient(gv, policy.params)])

    theta0 = policy.get_flat()
    hvp = finite_difference_hvp(policy, lambda: ml.kl_gradient(support, query)[1].numpy(),
                                base_eps=1e-4, damping=0.0)
    approx = hvp(v)
    np.testing.assert_allclose(approx, exact, rtol=1e-4, atol=1e-6 * np.abs(exact).max())
    np.testing.assert_array_equal(policy.get_flat(), theta0)  # parameters restored
    damped = finite_difference_hvp(policy, lambda: ml.kl_gradient(support, query)[1].numpy(),
                                   base_eps=1e-4, damping=1e-5)(v)
    np.testing.assert_allclose(damped - approx, 1e-5 * v, rtol=1e-6, atol=1e-9)


def test_fd_hvp_epsilon_is_scaled_by_parameter_norm():
    """With a quadratic the FD HVP is exact for any eps; check the eps actually used."""
    seen = []
    target = NumpyTarget([3.0, 4.0])  # norm 5

    def grad():
        seen.append(target.get_flat())
        return 2.0 * target.get_flat()

    hv = finite_difference_hvp(target, grad, base_eps=1.0, damping=0.0)(np.array([1.0, 0.0]))
    np.testing.assert_allclose(hv, [2.0, 0.0])
    np.testing.assert_allclose(seen[0] - [3.0, 4.0], [1.0 / (5 + 1e-8), 0.0])


def test_line_search_rejects_kl_violation_and_restores_theta():
    """No candidate within the KL bound: all 15 backtracks tried (theta - 0.8^k full_step for
    k = 0..14, in that order), theta put back."""
    target = NumpyTarget([1.0, -2.0])
    theta0 = target.get_flat()
    tried = []

    def loss_kl():  # every candidate improves the loss but breaks the KL bound
        tried.append(target.get_flat())
        return float(np.sum(target.theta ** 2)), 1.0

    full_step = np.array([0.5, -0.5])
    accepted, k, loss, kl = backtracking_line_search(target, loss_kl, full_step, loss_before=10.0, max_kl=0.01)
    assert not accepted and k == 14
    np.testing.assert_allclose(tried, [theta0 - 0.8 ** k * full_step for k in range(15)], rtol=1e-15)
    np.testing.assert_array_equal(target.get_flat(), theta0)


def test_line_search_takes_the_first_candidate_that_also_lowers_the_loss():
    """rllab's acceptance needs both conditions: loss < loss_before and KL <= max_kl. Here every
    candidate is within the KL bound, but the loss is above loss_before until the step is short
    enough (loss (theta - 0.5)^2 at theta = 0.8^k, by hand: k = 0, 1, 2 give 0.25, 0.09, 0.0196
    against loss_before 0.05, so k = 2)."""
    target = NumpyTarget([0.0])
    full_step = np.array([-1.0])  # candidates theta0 - 0.8^k * full_step = 0.8^k
    loss_kl = lambda: (float((target.theta[0] - 0.5) ** 2), 0.0)
    accepted, k, loss, kl = backtracking_line_search(target, loss_kl, full_step, loss_before=0.05, max_kl=0.01)
    assert accepted and k == 2
    np.testing.assert_allclose(target.get_flat(), [0.64])


def test_line_search_backtracks_until_kl_bound_holds():
    """The first backtrack k with KL <= max_kl is taken (k = 2 here, by hand)."""
    target = NumpyTarget([0.0, 0.0])
    step = np.array([1.0, 0.0])

    def loss_kl():
        size = np.linalg.norm(target.theta)
        return -size, size ** 2  # improves, KL grows with the step

    accepted, k, loss, kl = backtracking_line_search(target, loss_kl, step, loss_before=0.0, max_kl=0.5)
    # 0.8^k <= sqrt(0.5) first at k = 2 (0.64).
    assert accepted and k == 2
    np.testing.assert_allclose(target.get_flat(), [-0.64, 0.0])


def test_trpo_step_on_quadratic_respects_trust_region():
    """Loss g.x, KL 0.5 x'Ax: the step is the natural-gradient step scaled to KL = delta."""
    a = np.diag([1.0, 4.0])
    g = np.array([1.0, 1.0])
    target = NumpyTarget([0.0, 0.0])
    kl = lambda: 0.5 * target.theta @ a @ target.theta
    opt = ConjugateGradientOptimizer(max_kl=0.01, damping=0.0)
    info = opt.step(target, loss_grad_fn=lambda: (g @ target.theta, g.copy()),
                    kl_grad_fn=lambda: a @ target.theta, loss_kl_fn=lambda: (g @ target.theta, kl()))
    direction = np.linalg.solve(a, g)
    full_step = np.sqrt(2 * 0.01 / (direction @ a @ direction)) * direction
    # The full step has KL = delta * s'As / (s'As + 1e-8), just inside the bound: taken at once.
    assert info.accepted and info.backtracks == 0
    np.testing.assert_allclose(kl(), 0.01, rtol=1e-6)
    np.testing.assert_allclose(target.theta, -full_step, rtol=1e-6)
