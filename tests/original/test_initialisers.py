"""Our networks start from the distributions the authors' code draws from. Supervised: for every network
the paper trains (and Omniglot's conv net with --max_pool), each weight of the original's
`weights` dict (maml.py, `construct_fc_weights` / `construct_conv_weights`, run unchanged in a
TF1 child process, tests/original/original_init.py) and ours have the same shape, zeros where
the original's are zeros, and the same distribution to sampling error: the original's
tf.truncated_normal(stddev=0.01) (std 0.0088, nothing beyond 0.02), Glorot uniform (the
contrib xavier initialisers, shimmed as Glorot uniform: std sqrt(2 / (fan_in + fan_out)),
bounded by sqrt(3) std) and the Omniglot output kernel's tf.random_normal (std 1, unbounded),
told apart by their spread (std) and by their largest entry in units of it.

MAML-TRPO: the point task's policy (maml_rl's `MAMLGaussianMLPPolicy`, 100-100 ReLU, built by
the authors' code unchanged in a child process, tests/original/run_maml_trpo.py's `init` mode)
against ours, the same way: Glorot-uniform kernels, zero biases, log-std parameters at
log(1) = 0.

The equivalence runs (test_equivalence.py, test_rl_equivalence.py) copy our initial weights
into the original's graph, so they cannot see an initialiser; this test does.
"""
import json

import numpy as np
import pytest

from original import harness, rl_harness
from original.child import run_child

# The networks the paper trains (by the equivalence harness's configuration that builds each);
# Omniglot's conv net with --max_pool (which the flags allow) is added below.
NETWORKS = {
    "sinusoid": "sinusoid MAML",
    "sinusoid oracle": "sinusoid oracle",
    "Omniglot 5-way conv": "Omniglot 5-way 1-shot",
    "Omniglot 20-way conv": "Omniglot 20-way 1-shot",
    "Omniglot 5-way, no conv": "Omniglot 5-way 1-shot, no conv",
    "MiniImagenet conv": "MiniImagenet 5-way 1-shot",
}


def _settings(network):
    if network == "Omniglot 5-way conv, max-pool":
        return harness.settings("Omniglot 5-way 1-shot", max_pool=True)
    return harness.settings(NETWORKS[network])


def _dims(s):
    if s["datasource"] == "sinusoid":
        return (3 if s["baseline"] == "oracle" else 1), 1
    return (784 if s["datasource"] == "omniglot" else 84 * 84 * 3), s["num_classes"]


def _assert_same_draws(ours, theirs):
    """Per weight: equal shape; all zeros iff the original's are; std within 15 % of the
    original's draw (within 3 / sqrt(entries), three standard deviations of the ratio of two
    draws' std, for weights of fewer than 400 entries: the sinusoid's output has 40); the largest
    entry within 30 % of the original's in units of std (uniform 1.73, truncated normal about
    2.2, normal 3-4.5 at these sizes). Both draws are seeded."""
    assert sorted(ours) == sorted(theirs)
    for key, original in theirs.items():
        mine = ours[key]
        assert mine.shape == original.shape, (key, mine.shape, original.shape)
        if not original.any():
            assert not mine.any(), f"{key}: the original's are zeros"
            continue
        (std, peak), (their_std, their_peak) = _spread(mine), _spread(original)
        assert abs(std / their_std - 1) < max(0.15, 3 / mine.size ** 0.5), \
            f"{key}: std {std:.4g}, the original's {their_std:.4g} ({mine.size} entries)"
        assert abs(peak / their_peak - 1) < 0.3, f"{key}: largest entry {peak:.2f} std, the original's {their_peak:.2f}"


def _spread(values):
    """(std, largest |entry| / std) of a weight's entries."""
    std = float(np.std(values))
    return std, float(np.max(np.abs(values))) / std


ALL_NETWORKS = [*NETWORKS, "Omniglot 5-way conv, max-pool"]


@pytest.fixture(scope="module")
def original_weights():
    """{network: the original's initial `weights` dict}, every network drawn in one child."""
    jobs = []
    for network in ALL_NETWORKS:
        s = _settings(network)
        dim_input, dim_output = _dims(s)
        jobs.append({"name": network, "flags": harness.original_flags(s), "dim_input": dim_input,
                     "dim_output": dim_output, "seed": 1})
    drawn, _ = run_child("original_init.py", {"networks": json.dumps(jobs)})
    return {network: {key[len(network) + 1:]: value for key, value in drawn.items() if key.startswith(network + "/")}
            for network in ALL_NETWORKS}


@pytest.mark.parametrize("network", ALL_NETWORKS)
def test_initial_weights_match_the_originals_distributions(network, original_weights):
    """Every entry of the original's `weights` dict against ours (`_assert_same_draws`)."""
    s = _settings(network)
    theirs = original_weights[network]
    learner, keys = harness.build_ours(s, seed=1)
    ours = {keys[v.path]: v.numpy() for v in learner.variables if not keys[v.path].startswith("norm/")}
    _assert_same_draws(ours, theirs)


def test_policy_initial_parameters_match_the_originals_distributions():
    """The point task's policy, every entry of the original's `all_params` (W0, b0, W1, b1, W2,
    b2, std_param) against ours (`_assert_same_draws`)."""
    from rl.envs import make_vec_env

    config = rl_harness.POINT
    theirs, _ = rl_harness.run_theirs({"config": {**config, "mode": "init"}})
    theirs = {key[len("init/"):]: value for key, value in theirs.items()}
    vec_env = make_vec_env("point", 1)
    model = rl_harness.build_policy(vec_env, config, seed=1).model
    _assert_same_draws(dict(zip(rl_harness.param_keys(model), (v.numpy() for v in model.trainable_variables))),
                       theirs)


@pytest.mark.parametrize("network", ["Omniglot 5-way conv", "MiniImagenet conv"])
def test_norm_offsets_start_at_zero(network):
    """The batch norm offsets (contrib batch_norm's beta, zeros_initializer, created in the
    forward pass rather than in `weights`) start at zero."""
    learner, keys = harness.build_ours(_settings(network), seed=1)
    offsets = [v.numpy() for v in learner.variables if keys[v.path].startswith("norm/")]
    assert len(offsets) == 4 and not any(o.any() for o in offsets)
