"""The authors' supervised code (cbfinn/maml, unchanged, in a TF1-graph child process) and ours
give the same numbers on the same weights and task batches (tests/original/harness.py).

Tolerances.
- float64 (the original graph with every float32 it names read as float64, our model built in
  float64): the same function, so agreement to float64 round-off: losses 1e-12 relative,
  meta-gradients 1e-10 (relative L2 over all variables; measured 1e-14..1e-16).
- float32 (what both really run; machine epsilon 1.2e-7): losses are the same function summed
  in different orders, 1e-5 before any step and 1e-4 after (the fast weights carry the inner
  gradient's round-off). For meta-gradients through batch norm the yardstick is our own two
  implementations (the batched default and the per-task reference, proved equal in float64 in
  tests/test_batched.py): parts of the exact gradient are zero there (a bias before batch norm
  does not change the output), so both sides hold only round-off in them.
Free-running float32 weights are compared only without batch norm (the sinusoid): Adam divides
every gradient element by its own running magnitude, so round-off in an exactly-zero gradient
element becomes a full step of either sign (the README table shows our two implementations
diverging from each other that way as much as from the original).
"""
import pytest

from original import harness


def _check32(r, iterations):
    assert r["iterations"] == iterations
    assert r["weights_moved"] > 1e-3, "training did not move the weights: the comparison would be vacuous"
    assert r["loss"] < 1e-4, r
    assert r.get("accuracy", 0.0) == 0.0, r
    if "reference_gradient" in r:
        assert r["gradient"] < 3 * r["reference_gradient"] + 1e-5, r


def _check64(r, iterations):
    assert r["iterations"] == iterations
    assert r["weights_moved"] > 1e-3, "training did not move the weights: the comparison would be vacuous"
    assert r["loss"] < 1e-12 and r["gradient"] < 1e-10 and r.get("accuracy", 0.0) == 0.0, r


def test_sinusoid_maml_run_equals_the_original():
    """Sinusoid MAML (main.py's metatrain_op, K=10, alpha 0.01, meta-batch 25): 10 Adam steps in
    float32. Without batch norm every gradient element is well defined, so the free-running
    weights agree to round-off as well (Adam with epsilon 1e-8, beta 0.9/0.999, as TF1's)."""
    r = harness.compare("sinusoid MAML", 10, free_running=True, reference=False)
    _check32(r, 10)
    assert r["gradient"] < 1e-5 and r["free_loss"] < 1e-5 and r["free_weights"] < 1e-5, r


@pytest.mark.parametrize("config", ["sinusoid pretrained", "sinusoid oracle"])
def test_sinusoid_baselines_equal_the_original(config):
    """The baselines: the original's pretrain_op (Adam on the support loss, no adaptation); the
    oracle sees [x, A, phase]. 10 float32 iterations: the losses and gradients at the same
    weights, and (no batch norm, so every Adam step is well defined) the weights each side
    reaches on its own, which only the same update rule (Adam's settings, the gradient's sign
    and scale) gives."""
    r = harness.compare(config, 10, free_running=True, reference=False)
    _check32(r, 10)
    assert r["gradient"] < 1e-5 and r["free_loss"] < 1e-5 and r["free_weights"] < 1e-5, r


@pytest.mark.parametrize("config", ["Omniglot 5-way 1-shot, no conv", "Omniglot 5-way 1-shot"])
def test_omniglot_meta_gradients_equal_the_original_in_float64(config, omniglot_prepared):
    """Omniglot 5-way 1-shot (alpha 0.4, real images; meta-batch 8 instead of 32 for time): the
    second-order meta-gradient through conv + batch norm (or the 784-256-128-64-64 net) equals
    the original's tf.gradients through its map_fn to float64 round-off, at each of 2
    iterations of our training trajectory; so do the pre/post-update losses and accuracies."""
    r = harness.compare(config, 2, omniglot_dir=omniglot_prepared, free_running=False, reference=False,
                        dtype="float64", meta_batch_size=8)
    _check64(r, 2)


@pytest.mark.slow
@pytest.mark.parametrize("config", list(harness.CONFIGS))
def test_every_configuration_for_the_readme_iterations(config, omniglot_prepared):
    """The README's table: 100 iterations (10 for MiniImagenet) in float64 at the paper's
    meta-batch, and the float32 run with its calibration (10 iterations, 2 for MiniImagenet)."""
    mini = config.startswith("MiniImagenet")
    r64 = harness.compare(config, 10 if mini else 100, omniglot_dir=omniglot_prepared, free_running=False,
                          reference=False, dtype="float64")
    _check64(r64, 10 if mini else 100)
    r32 = harness.compare(config, 2 if mini else 10, omniglot_dir=omniglot_prepared, free_running=False,
                          reference=True, exact=True)
    # float32 is a yardstick here, not the proof: through 1-shot batch norm (a handful of values
    # per channel) and up to 5 inner steps gradients carry round-off of several percent, and a
    # max-pool near-tie or a ReLU input that round-off moves across zero routes a gradient
    # elsewhere. A lost term is of order 1 (e.g. the second-order terms through batch norm, when
    # the shim used the fused kernel: about 2), hence 0.5 where the float32 gradient is well
    # conditioned. Where it is not, the bound grows by twice the authors' own float32 distance
    # from the exact gradient (ours in float64 at the same weights, equal to theirs in float64 to
    # 1e-12: r64): two equally accurate float32 implementations differ by at most about that. On
    # MiniImagenet 5-shot at the second iteration's weights (generated images) their float32
    # graph was 42 % from the exact meta-gradient, ours 80 %, ours against theirs 66 % (29 November).
    assert r32["loss"] < 5e-2 and r32["gradient"] < 0.5 + 2 * r32["theirs_exact_gradient"], r32
