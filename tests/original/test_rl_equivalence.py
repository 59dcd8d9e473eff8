"""MAML-TRPO equivalence with the authors' code (cbfinn/maml_rl, run unchanged in a child process).

Our trainer's real meta-iteration on the point task samples paths with our sampler; the authors'
`MAMLTRPO.train()` (MAMLGaussianMLPPolicy, LinearFeatureBaseline, rllab's process_samples,
ConjugateGradientOptimizer with FiniteDifferenceHvp) then runs on the same paths from the same
initial parameters, and every intermediate quantity is compared (rl_harness.py). Likewise the
evaluation's adaptation steps against the released test scripts' VPG.

Tolerances (max relative difference, per parameter variable; see rl_harness.py). Both sides
compute in float32 with TensorFlow, in different graphs (task-batched matmuls on our side,
per-task graphs on theirs) and with different but equivalent KL formulas, so quantities agree to
float32 round-off, and the float64 replay of our code measures how large that round-off is:
- advantages: float64 numpy on both sides, the same operations: 1e-12.
- single float32 evaluations (parameters after a gradient step, gradients, Hessian-vector
  products, losses): relative 1e-5 for parameters, 1e-4 for gradients and parameter changes
  (sums over thousands of time steps in another order; observed <= 3e-5), absolute 1e-7 for the
  ~0 values (LossBefore, MeanKLBefore; max KL is 1e-2). Those two are logged values compared for
  completeness: at theta_old the likelihood ratio is 1 and the KL 0 whatever the formulas, so
  they cannot tell a wrong surrogate or KL; the gradient row (the surrogate's) and the
  Hessian-vector product row (the KL's) do. A parameter change read off two float32
  parameter vectors is only known to a float32 spacing of the parameters; for the evaluation's
  alpha/100 steps (ant direction) that floor, times 4, is the tolerance when larger than 1e-4.
- rllab's `krylov.cg` and ours on one fixed matrix: bitwise equal.
- our step size, line search and update run along the authors' search direction: 1e-5 (1e-4 for
  the parameter change).
- end to end through the conjugate gradient: 10 CG iterations on the ill-conditioned KL
  Hessian amplify the ~1e-5 round-off of the finite-difference Hessian-vector products about a
  thousandfold, mostly along flat (low-curvature) directions; our own float32 direction differs
  from our float64 one by up to 7.5e-2 per variable at the paper's batch (1.4e-2 in the KL
  metric). Direction and updated parameters must agree within 0.25 per variable and 5e-2 in the
  KL metric ||x||_H = sqrt(x'Hx) (H the exact KL Hessian, the norm TRPO's step is measured in),
  the scalars they feed (step size, LossAfter, MeanKL) within 1e-2; and the authors' float32
  values must be as close to our float64 ones, so the gap is round-off, not an algorithmic
  difference. The pieces in between are checked tightly (Hessian-vector product, CG, the step
  along the authors' direction).
"""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import rl_harness  # noqa: E402

EXACT = 1e-12
TOLERANCES = {
    "advantages": EXACT,
    "adapted": 1e-5, "inner_delta": 1e-4,
    "loss_before": 1e-7, "kl_before": 1e-7,  # absolute
    "gradient": 1e-4, "hvp": 1e-4, "cg_fixed": 0.0,
    "backtracks": 0,  # absolute
    "along_step_size": 1e-5, "along_final": 1e-5, "along_delta": 1e-4,
    # through the conjugate gradient (round-off amplified, see the module docstring)
    "direction": 0.25, "final": 0.25, "outer_delta": 0.25,
    "direction_h": 5e-2, "outer_delta_h": 5e-2,
    "step_size": 1e-2, "loss_after": 1e-2, "kl_after": 1e-2,
}
THROUGH_CG = ("direction", "final", "outer_delta", "direction_h", "outer_delta_h", "step_size", "loss_after",
              "kl_after")


def check_iteration(result):
    failures = []
    for key, label, ours_theirs, ours_f64, theirs_f64 in result["rows"]:
        tol = TOLERANCES[key]
        if not ours_theirs <= tol:
            failures.append(f"{label}: ours vs theirs {ours_theirs:.2e} > {tol:.0e}")
        if key in THROUGH_CG and not max(ours_f64, theirs_f64) <= tol:
            failures.append(f"{label}: float32 vs float64 {ours_f64:.2e} / {theirs_f64:.2e} > {tol:.0e}")
    assert not failures, "\n".join(failures) + "\n" + rl_harness.markdown_iteration(result)
    assert result["along_backtracks"][0] == result["along_backtracks"][1]
    assert result["accepted"]
    assert result["kl_after"] > 1e-3  # the step moved the policy (max KL 1e-2): the comparison is not vacuous
    assert result["kl_tfp_vs_original"] < 1e-6  # tfp's KL vs the original's +1e-8 formula, float64


@pytest.fixture(scope="module")
def iteration_4x5():
    # Seed 0: tasks of unequal length (paths reaching the goal early), task 0 the longest, so the
    # original's sliced_fun truncation (test below) is a no-op.
    return rl_harness.compare_iteration(n_tasks=4, num_trajs=5, seed=0)


def test_one_meta_iteration_matches_the_original(iteration_4x5):
    """One MAML-TRPO meta-iteration on the point task (4 tasks x 5 paths of <= 100 steps, fast_lr
    0.5, max KL 0.01) from the same parameters on the same paths: advantages, the inner step's
    adapted parameters, LossBefore, MeanKLBefore, the surrogate gradient, the Hessian-vector
    product, the conjugate-gradient direction, the step size, the accepted backtrack, the
    updated parameters, LossAfter and MeanKL agree with the authors' objects to float32
    round-off; given the authors' search direction, our step size, line search and update agree
    with theirs to ~1e-7 (the update itself to ~1e-6)."""
    result = iteration_4x5
    assert not result["truncated"]
    assert result["replay_vs_iteration"] == 0.0  # the recorded paths reproduce the real iteration
    assert len(set(result["task_steps"][0] + result["task_steps"][1])) > 1  # unequal task lengths
    check_iteration(result)


@pytest.mark.slow
def test_one_meta_iteration_at_the_papers_batch():
    """The same at the paper's point-task batch: 20 tasks x 20 paths x 100 steps (seed 5: task 0
    holds the most steps, so no truncation)."""
    result = rl_harness.compare_iteration(n_tasks=20, num_trajs=20, seed=5)
    assert not result["truncated"]
    assert result["replay_vs_iteration"] == 0.0
    check_iteration(result)


@pytest.mark.slow
def test_the_original_truncates_every_task_to_task_0s_length():
    """A behaviour of the original, not of ours: rllab's `sliced_fun` (num_slices=1), wrapped
    around the TRPO optimiser's loss, gradient, KL and Hessian-vector product, cuts every input
    array to the length of the first (task 0's pre-update steps), so tasks with more steps lose
    their last ones in the meta-update (not in the sampling-time inner step). Seed 1 has such
    a task. Our code on data cut the same way matches the original to round-off; on the full data
    (what we and the paper's description use) the meta-gradient differs far beyond round-off."""
    runs = rl_harness.run_iteration(n_tasks=4, num_trajs=5, seed=1)
    emulated = rl_harness.compare_iteration(emulate_truncation=True, runs=runs)
    assert emulated["truncated"]
    check_iteration(emulated)
    full = {key: ours_theirs for key, _, ours_theirs, _, _ in rl_harness.compare_iteration(runs=runs)["rows"]}
    assert full["gradient"] > 1e-3 and full["adapted"] < TOLERANCES["adapted"]


def check_adaptation(result):
    failures = []
    for label, ours_theirs, ours_f64, theirs_f64 in result["rows"]:
        tol = EXACT if "advantages" in label else 1e-5
        if "change" in label:  # 1e-4, or 4 float32 spacings of the parameters (alpha/100 steps)
            tol = max(1e-4, 4 * result["floors"][label])
        if not ours_theirs <= tol:
            failures.append(f"{label}: ours vs theirs {ours_theirs:.2e} > {tol:.0e}")
    assert not failures, "\n".join(failures) + "\n" + rl_harness.markdown_adaptation(result)


@pytest.mark.parametrize("later_lr_scale", [0.5, 0.01], ids=["point-cheetah-ant_vel", "ant_dir"])
def test_evaluation_adaptation_matches_the_test_scripts(later_lr_scale):
    """The evaluation protocol's three adaptation steps (`rl.adaptation.adapt_and_evaluate`: step
    size alpha = 0.5, then later_lr_scale * alpha) against the released test scripts' VPG
    (FirstOrderOptimizer with init_learning_rate alpha, then GradientDescentOptimizer at
    0.5 alpha, or 0.01 alpha in test_maml_ant_direc.py), fed the paths our evaluation sampled
    (2 tasks x 5 paths): the same advantages and the same parameters after every step."""
    result = rl_harness.compare_adaptation(n_tasks=2, num_trajs=5, num_steps=3, fast_lr=0.5,
                                           later_lr_scale=later_lr_scale, seed=0)
    assert result["step_sizes"] == [0.5, 0.5 * later_lr_scale, 0.5 * later_lr_scale]
    check_adaptation(result)


@pytest.mark.slow
def test_evaluation_adaptation_at_the_papers_batch():
    """The same at the point test script's batch (40 paths of 100 steps per task), 4 test tasks."""
    result = rl_harness.compare_adaptation(n_tasks=4, num_trajs=40, num_steps=3, fast_lr=0.5, seed=0)
    check_adaptation(result)
