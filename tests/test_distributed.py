"""MAML on tf.distribute (maml_tf/distributed.py) against the single-device learner: the
meta-batch split by task over a MirroredStrategy of 2 logical CPUs gives the same meta-update,
the same Adam state on every replica, the same per-task evaluation, and checkpoints that move
between replica counts. (Multi-process jobs: tests/test_distributed_multi_worker.py.)"""
import numpy as np
import pytest
import tensorflow as tf

from distributed_cases import (CONFIGS, RTOL, global_relative_difference, in_theory_zero, learners,
                               local_support_inputs, random_batch)
from maml_tf.checkpoints import Checkpointer


@pytest.fixture(scope="module")
def strategy(two_replica_strategy):
    """The session's MirroredStrategy over 2 logical CPUs (tests/conftest.py)."""
    return two_replica_strategy


def _replica_values(variable):
    return [np.asarray(v) for v in getattr(variable, "value", variable).values]


# The non-conv net has a one-update test of its own (below).
@pytest.mark.parametrize("name", sorted(set(CONFIGS) - {"omniglot_5way_1shot_nonconv"}))
def test_two_replicas_make_the_single_device_meta_update(name, strategy):
    """Two meta-updates theta <- Adam(g), g = grad_theta (1/T) sum_i L_i(f_theta'_i) (eq. (1)),
    with the T tasks split 2 + 2 (3 + 3) across replicas and g all-reduced, against one device
    with all T tasks: after the first update Adam's first moment is exactly 0.1 g, so equal
    moments prove equal meta-gradients (float32 round-off of the regrouped sum); then the
    weights and both moments after two updates (those of in-theory-zero gradients aside, see
    `distributed_cases.in_theory_zero`), the logged means, and the same values on every replica (mirrored)."""
    plain, distributed = learners(name, strategy)
    tasks = CONFIGS[name][3]
    single_device_gradients = tf.function(lambda s, q: plain.meta_gradients(s, q, score_every_step=False),
                                          autograph=False)
    slots = distributed.meta_optimizer.variables[2:]  # m, v per variable, after `iteration`, `learning_rate`
    for step in range(2):
        batch = random_batch(CONFIGS[name][0], tasks, seed=step)
        scores, gradients = single_device_gradients(batch.support, batch.query)
        plain.apply_meta_gradients(gradients)
        means = distributed.train_step(batch.support, batch.query)
        for a, b in zip(scores.mean(), means):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=RTOL, atol=1e-6)
        if step == 0:
            gradients = [g.numpy() for g in gradients]
            assert global_relative_difference([0.1 * g for g in gradients], [m.numpy() for m in slots[::2]]) < RTOL
    compared = [not zero for zero in in_theory_zero(gradients)]
    assert sum(compared) >= len(compared) // 2
    weights = [v.numpy() for v, keep in zip(plain.variables, compared) if keep]
    assert global_relative_difference(weights, [v.numpy() for v, keep in zip(distributed.variables, compared)
                                                 if keep]) < RTOL
    moments = zip(plain.meta_optimizer.variables[2::2], plain.meta_optimizer.variables[3::2], slots[::2], slots[1::2])
    for (m, v, m2, v2), keep in zip(moments, compared):
        if keep:
            assert global_relative_difference([m.numpy(), v.numpy()], [m2.numpy(), v2.numpy()]) < 10 * RTOL
    for variable in [*distributed.model.weights, *slots]:
        first, *others = _replica_values(variable)
        for other in others:
            np.testing.assert_array_equal(other, first)
    assert int(distributed.meta_optimizer.iterations.numpy()) == 2


def test_two_replicas_make_the_single_device_meta_gradient_with_factored_dense_kernels(strategy):
    """The non-conv net, whose hidden dense kernels adapt factored (`LowRankKernel`) on each
    replica's own tasks: with the tasks split 2 + 2, the all-reduced meta-gradient is the single
    device's (Adam's first moment after one update is exactly 0.1 g) and so are the logged
    means, to float32 round-off. One update only: the factored step's round-off depends on how
    many tasks share its matmuls (2e-6 relative here), and Adam's first step turns near-zero
    elements into +-meta_lr by their sign, so later updates differ by more than round-off."""
    plain, distributed = learners("omniglot_5way_1shot_nonconv", strategy)
    assert plain.low_rank_kernels(5, 1)
    batch = random_batch("omniglot", CONFIGS["omniglot_5way_1shot_nonconv"][3])
    scores, gradients = tf.function(lambda s, q: plain.meta_gradients(s, q, score_every_step=False), autograph=False)(
        batch.support, batch.query)
    means = distributed.train_step(batch.support, batch.query)
    for a, b in zip(scores.mean(), means):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=RTOL, atol=1e-6)
    first_moments = [m.numpy() for m in distributed.meta_optimizer.variables[2::2]]
    assert global_relative_difference([0.1 * g.numpy() for g in gradients], first_moments) < RTOL


def test_pretrain_step_matches_single_device(strategy):
    """The pretrained baseline's Adam step on the mean support loss over all tasks, split 2 + 2."""
    plain, distributed = learners("omniglot_5way_1shot_conv", strategy)
    batch = random_batch("omniglot", 4)
    loss = plain.pretrain_step(batch.support)
    np.testing.assert_allclose(distributed.pretrain_step(batch.support).numpy(), loss.numpy(), rtol=RTOL)
    assert global_relative_difference([v.numpy() for v in plain.model.weights],
                                       [v.numpy() for v in distributed.model.weights]) < RTOL


def test_evaluation_gathers_per_task_scores_in_order(strategy):
    """Evaluation splits the tasks (3 tasks: padded to 4, the copy dropped) and returns each
    task's scores in task order, as one device does."""
    plain, distributed = learners("sinusoid", strategy)
    batch = random_batch("sinusoid", 3)
    single = plain.evaluate(batch.support, batch.query, 3)
    split = distributed.evaluate(batch.support, batch.query, 3)
    for a, b in zip(single, split):
        assert b.shape == a.shape
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=1e-6)


def test_each_replica_adapts_its_own_share_of_the_tasks(strategy):
    """6 tasks over 2 replicas: replica r receives tasks 3r..3r+2 and nothing else (were every
    replica given all 6, the all-reduced mean of identical gradients would still equal the single
    device's, and the comparisons above could not tell)."""
    _, distributed = learners("sinusoid", strategy)
    batch = random_batch("sinusoid", 6)
    local = local_support_inputs(distributed, batch)
    assert [x.shape[0] for x in local] == [3, 3]
    np.testing.assert_array_equal(np.concatenate(local), np.asarray(batch.support[0]))


def test_meta_batch_that_does_not_split_is_a_one_line_error(strategy):
    """5 tasks over 2 replicas: a ValueError naming --meta_batch_size, before any step."""
    _, distributed = learners("sinusoid", strategy)
    batch = random_batch("sinusoid", 5)
    with pytest.raises(ValueError, match=r"--meta_batch_size=5 does not split evenly across 2 replicas"):
        distributed.train_step(batch.support, batch.query)


def test_checkpoints_move_between_replica_counts(strategy, tmp_path):
    """A checkpoint written by the 2-replica learner restores into a single-device one (and
    back): the same weights, Adam moments and iterations, bit for bit; from there the next
    meta-update on the same batch gives both the same Adam state (moments and step count, to
    float32 round-off; the weights themselves differ by more, since Adam's first steps turn
    round-off in near-zero gradient elements into steps of +-meta_lr)."""
    plain, distributed = learners("sinusoid", strategy)
    batch = random_batch("sinusoid", 6)
    distributed.train_step(batch.support, batch.query)
    Checkpointer(str(tmp_path), distributed).save(1)
    assert Checkpointer(str(tmp_path), plain).restore() == 1
    _assert_same_state_then_same_update(plain, distributed, str(tmp_path), seed=5)
    Checkpointer(str(tmp_path / "single"), plain).save(2)
    _, resumed = learners("sinusoid", strategy)
    assert Checkpointer(str(tmp_path / "single"), resumed).restore() == 2
    _assert_same_state_then_same_update(plain, resumed, str(tmp_path), seed=6)


def _assert_same_state_then_same_update(a, b, run_dir, seed):
    """Everything a checkpoint holds but the iteration (weights, both Adams) bit for bit the
    same; then one meta-update of each on the same batch leaves Adam's state the same to
    float32 round-off."""
    for x, y in zip(Checkpointer(run_dir, a).state[:-1], Checkpointer(run_dir, b).state[:-1], strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    batch = random_batch("sinusoid", 6, seed=seed)
    a.train_step(batch.support, batch.query)
    b.train_step(batch.support, batch.query)
    assert global_relative_difference([v.numpy() for v in a.meta_optimizer.variables],
                                      [v.numpy() for v in b.meta_optimizer.variables]) < RTOL
