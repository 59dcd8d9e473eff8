"""rllab's `ConjugateGradientOptimizer` (TRPO step) with finite-difference HVPs.

The optimiser works on a *target* exposing `get_flat()` / `set_flat(x)` and on
functions that evaluate the loss, its gradient and the KL gradient at the
target's current parameters; like the original it moves the target's
parameters to evaluate candidates and puts them back when it rejects a step.
"""
import dataclasses

import numpy as np


def conjugate_gradient(hvp, b, iters=10, residual_tol=1e-10):
    """Approximately solve H x = b (rllab `krylov.cg`)."""
    p = b.copy()
    r = b.copy()
    x = np.zeros_like(b)
    rdotr = r.dot(r)
    for _ in range(iters):
        z = hvp(p)
        v = rdotr / p.dot(z)
        x += v * p
        r -= v * z
        new_rdotr = r.dot(r)
        p = r + (new_rdotr / rdotr) * p
        rdotr = new_rdotr
        if rdotr < residual_tol:
            break
    return x


def finite_difference_hvp(target, grad_fn, base_eps=1.0, damping=1e-5):
    """v -> H v + damping v, with H v = (g(theta + eps v) - g(theta - eps v)) / (2 eps),
    eps = base_eps / (||theta|| + 1e-8), g = `grad_fn()` at the target's parameters.

    rllab's `FiniteDifferenceHvp` default base_eps is 1e-8, but the TRPO optimiser
    constructs it as `FiniteDifferenceHvp(num_slices)`, i.e. base_eps = 1: that is
    the value the paper's runs used, hence our default.
    """
    def hvp(v):
        theta = target.get_flat()
        eps = np.asarray(base_eps / (np.linalg.norm(theta) + 1e-8), dtype=theta.dtype)
        v = np.asarray(v, dtype=theta.dtype)
        target.set_flat(theta + eps * v)
        g_plus = grad_fn()
        target.set_flat(theta - eps * v)
        g_minus = grad_fn()
        target.set_flat(theta)
        return (g_plus - g_minus) / (2 * eps) + damping * v
    return hvp


@dataclasses.dataclass
class StepInfo:
    """What one TRPO step did: loss and KL after it, whether the line search accepted a
    candidate and at which backtrack k, and the step size sqrt(2 delta / s'Hs) it started from."""
    loss_before: float
    loss_after: float
    kl_after: float
    accepted: bool
    backtracks: int
    initial_step_size: float  # read by tests/original/rl_harness.py (rllab's initial_step_size)
    gradient: np.ndarray = None   # loss gradient at the start (read-only record)
    direction: np.ndarray = None  # conjugate-gradient solution (the step is -size * direction)


def backtracking_line_search(target, loss_kl_fn, full_step, loss_before, max_kl,
                             backtrack_ratio=0.8, max_backtracks=15):
    """Try theta - 0.8^k * full_step for k < max_backtracks; keep the first that
    lowers the loss with KL <= max_kl, otherwise restore theta.
    Returns (accepted, k, loss, kl) at the final parameters."""
    theta0 = target.get_flat()
    loss, kl = np.nan, np.nan
    for k in range(max_backtracks):
        target.set_flat(theta0 - backtrack_ratio ** k * full_step)
        loss, kl = loss_kl_fn()
        if loss < loss_before and kl <= max_kl:
            return True, k, loss, kl
    target.set_flat(theta0)
    return False, max_backtracks - 1, loss, kl


class ConjugateGradientOptimizer:
    """rllab's TRPO optimiser: KL bound `max_kl` (delta), `cg_iters` conjugate-gradient
    iterations on finite-difference Hessian-vector products (`hvp_base_eps`) plus `damping`,
    and a backtracking line search (`backtrack_ratio`, `max_backtracks`)."""

    def __init__(self, max_kl=0.01, cg_iters=10, damping=1e-5, backtrack_ratio=0.8,
                 max_backtracks=15, hvp_base_eps=1.0):
        self.max_kl = max_kl
        self.cg_iters = cg_iters
        self.damping = damping
        self.backtrack_ratio = backtrack_ratio
        self.max_backtracks = max_backtracks
        self.hvp_base_eps = hvp_base_eps

    def step(self, target, loss_grad_fn, kl_grad_fn, loss_kl_fn):
        """The TRPO step (Schulman et al. 2015, as rllab): approximately solve

            min_theta L(theta)   subject to   KL(theta_old, theta) <= delta

        by the natural-gradient direction s = H^-1 g (g = grad L, H = Hessian of the mean KL at
        theta_old, by `cg_iters` conjugate-gradient iterations on finite-difference products),
        the full step beta s with beta = sqrt(2 delta / (s'Hs + 1e-8)), and a line search
        theta = theta_old - 0.8^k beta s for the first k that lowers L with KL <= delta (none:
        theta_old stays).

        Moves `target` (`get_flat`/`set_flat`). `loss_grad_fn() -> (loss, flat grad)`,
        `kl_grad_fn() -> flat grad of the KL`, `loss_kl_fn() -> (loss, kl)`, each at the
        target's current parameters. Returns a `StepInfo`."""
        loss_before, grad = loss_grad_fn()
        hvp = finite_difference_hvp(target, kl_grad_fn, self.hvp_base_eps, self.damping)
        direction = conjugate_gradient(hvp, grad, self.cg_iters)
        step_size = np.sqrt(2.0 * self.max_kl / (direction.dot(hvp(direction)) + 1e-8))
        if np.isnan(step_size):
            step_size = 1.0
        accepted, k, loss, kl = backtracking_line_search(
            target, loss_kl_fn, step_size * direction, loss_before, self.max_kl,
            self.backtrack_ratio, self.max_backtracks)
        if not accepted:
            loss, kl = loss_kl_fn()
        return StepInfo(float(loss_before), float(loss), float(kl), accepted, k, float(step_size), grad, direction)
