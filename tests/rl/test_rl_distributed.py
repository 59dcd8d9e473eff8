"""MAML-TRPO on tf.distribute (rl/distributed.py) in one process: a MirroredStrategy over the 2
logical CPUs of tests/conftest.py against one device. The shares of the surrogate and KL add up
to the single-device values, a slice of the tasks samples the single-device paths, one
meta-iteration with the tasks split 2 + 2 takes the single-device TRPO step, a run moves
between replica counts, rl.evaluate's split returns equal one device's, and the trainer agrees
to start only after the chief's checks.
(Multi-process jobs: tests/rl/test_rl_distributed_multi_worker.py.)"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rl import objectives as obj
from rl.config import TrainConfig
from rl.distributed import DistributedMAMLTRPO
from rl.envs import PointVecEnv, make_vec_env
from rl.evaluation import evaluate_run
from rl.maml import MAMLTRPO
from rl.policy import Policy
from rl.sampler import SharedNoise, rollout
from rl.trainer import run
from run_files import trained_weights

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture(scope="module")
def strategy(two_replica_strategy):
    """The session's MirroredStrategy over 2 logical CPUs (tests/conftest.py)."""
    return two_replica_strategy


def _relative(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(a))


def test_shares_add_up_to_the_surrogate_and_its_kl(synthetic_data):
    """Tasks with 17, 5, 11 and 2 valid query steps split 2 + 2: the slices' shares
    (sum_i L_i / T, sum_{i,t} KL_{i,t} / N) and their gradients add up to the single-device
    surrogate (a mean over tasks) and KL (a mean over all query steps) in float64; averaging
    the slices' own means instead would be wrong by far more (the test data can tell)."""
    data = synthetic_data(np.random.default_rng(0), 4, 20, dtype=tf.float64)
    mask = np.zeros((4, 20))
    for i, length in enumerate((17, 5, 11, 2)):
        mask[i, :length] = 1.0
    data["mask"] = tf.constant(mask)
    policy = Policy(2, 2, hidden_sizes=(6, 5), dtype="float64", seed=3)
    params = obj.inner_step(policy.forward, policy.params, data, 0.3)  # theta'_i, differentiable in theta

    def values_and_grads(fn):
        with tf.GradientTape(persistent=True) as tape:
            params = obj.inner_step(policy.forward, policy.params, data, 0.3)
            loss, kl = fn(params)
        return [np.concatenate([np.ravel(g) for g in tape.gradient(v, policy.params)]) for v in (loss, kl)], \
            [float(loss), float(kl)]

    whole_grads, whole = values_and_grads(lambda p: obj.surrogate_and_kl(policy.forward, p, data))
    slices = [slice(0, 2), slice(2, 4)]
    parts = [values_and_grads(lambda p, s=s: obj.surrogate_and_kl_shares(
        policy.forward, [q[s] for q in p], {k: v[s] for k, v in data.items()}, 4.0, float(mask.sum())))
        for s in slices]
    np.testing.assert_allclose([parts[0][1][i] + parts[1][1][i] for i in range(2)], whole, rtol=1e-13)
    for i in range(2):
        assert _relative(whole_grads[i], parts[0][0][i] + parts[1][0][i]) < 1e-13
    # The slices' own mean KLs, averaged: what a per-replica MEAN reduction would give.
    own_means = [float(obj.surrogate_and_kl(policy.forward, [q[s] for q in params],
                                            {k: v[s] for k, v in data.items()})[1]) for s in slices]
    assert abs(np.mean(own_means) - whole[1]) > 0.05 * abs(whole[1])


def _homing_act_fn(calls, std=0.05):
    """Point-oracle policy that walks to the goal with noise `std`, so paths end early (and at
    different steps per task); counts its calls in `calls`."""
    def act(obs):
        calls.append(1)
        position, goal = obs[:, :2], obs[:, 2:]
        return np.clip((goal - position) / 0.1, -1, 1), np.full((len(obs), 2), np.log(std))
    return act


@pytest.mark.parametrize("trajs, budget, std, near_ends_sooner", [(3, 60, 0.05, True), (6, 100, 0.5, False)])
def test_a_slice_of_the_tasks_samples_the_single_device_paths(trajs, budget, std, near_ends_sooner):
    """The point task, 4 tasks x `trajs` slots with a step budget (paths restarted until `budget`
    steps): the two slices of 2 tasks, each drawing its rows of the whole batch's noise
    (`SharedNoise`), sample exactly the paths the whole batch gives those tasks, and leave the
    RNG where the whole rollout leaves it, also where the near slice's loop ends first (it catches
    up the draws). The whole batch steps every started path to its end (`stop_dropped=False`), the
    slices stop the ones the collector drops (the second case stops some, and runs them out past
    the slice's loop): each slice still reports the loop count of stepping them all, which for
    the far slice is the whole batch's."""
    tasks = np.array([[0.02, 0.01], [-0.03, 0.02], [0.4, -0.4], [-0.35, 0.45]])
    horizon = 40
    calls = []
    rng = np.random.default_rng(5)
    whole = rollout(PointVecEnv(4 * trajs, oracle=True), tasks, trajs, horizon, _homing_act_fn(calls, std), rng,
                    steps_per_task=budget, stop_dropped=False)
    loop_steps, after = len(calls), rng.bit_generator.state
    reported = []

    def agree_steps(steps):
        reported.append(steps)
        return max(steps, loop_steps)

    for first in (0, 2):
        rng = np.random.default_rng(5)
        noise = SharedNoise(rng, 4 * trajs, first * trajs, 2, agree_steps)
        part = rollout(PointVecEnv(2 * trajs, oracle=True), tasks[first:first + 2], trajs, horizon,
                       _homing_act_fn([], std), rng, steps_per_task=budget, noise=noise)
        assert rng.bit_generator.state == after
        paths = part.mask.shape[1]
        for key in ("observations", "actions", "rewards", "mask", "means", "log_stds"):
            np.testing.assert_array_equal(getattr(part, key), getattr(whole, key)[first:first + 2, :paths])
            assert not getattr(whole, key)[first:first + 2, paths:].any()
    assert reported[1] == loop_steps and (reported[0] < loop_steps) == near_ends_sooner
    assert len(np.unique(whole.mask.sum(-1)[whole.path_mask])) > 3  # paths of many lengths


def _learners(strategy, dtype):
    """One-device MAML-TRPO and the 2-replica one on the point task, same initial policy; 5 paths
    of at most 50 steps per task."""
    config = TrainConfig(fast_lr=0.5, meta_batch_size=4, fast_batch_size=5, max_path_length=50,
                         hidden_sizes=[32, 32], seed=3, batch_in_steps=False)
    learners = []
    for distributed in (False, True):
        policy = Policy(2, 2, config.hidden_sizes, dtype=dtype, seed=3)
        env = make_vec_env("point", 4 * 5)
        learners.append(DistributedMAMLTRPO(policy, env, config, strategy) if distributed
                        else MAMLTRPO(policy, env, config))
    return learners


@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 3e-3)])
def test_two_replicas_make_the_single_device_meta_update(strategy, dtype, tolerance, monkeypatch):
    """One MAML-TRPO iteration with the 4 tasks split 2 + 2 across replicas, against one device
    from the same seed: the same tasks and paths (bit for bit), the same surrogate gradient, the
    same conjugate-gradient direction, step size and accepted backtrack, and the same update
    theta_1 - theta_0, to round-off (float64: 1e-12 relative, measured 1e-15; float32, what
    rl.train runs, where ten CG iterations on finite-difference products amplify round-off:
    3e-3, measured 3e-4). A goal counts as reached within 0.2, so paths end early and the two
    replicas hold different numbers of query steps: the KL must be weighted by steps."""
    monkeypatch.setattr("rl.envs.point.SUCCESS_TOL", 0.2)
    single, split = _learners(strategy, dtype)
    theta0 = single.policy.get_flat()
    np.testing.assert_array_equal(theta0, split.policy.get_flat())
    stats = [learner.iteration(np.random.default_rng(7)) for learner in (single, split)]
    for key in ("support_batch", "query_batch"):
        for field in ("observations", "actions", "mask"):
            np.testing.assert_array_equal(getattr(single.last_iteration[key], field),
                                          getattr(split.last_iteration[key], field))
    steps = single.last_iteration["query_batch"].mask.sum(axis=(1, 2))
    assert steps[:2].sum() != steps[2:].sum() and steps.max() < 250, steps
    for column in ("0AverageReturn", "0StdReturn", "1AverageReturn", "1MinReturn", "1NumTrajs", "EnvSteps",
                   "StepAccepted", "Backtracks"):
        assert stats[0][column] == stats[1][column], column
    for column in ("LossBefore", "LossAfter", "MeanKL"):
        assert abs(stats[0][column] - stats[1][column]) <= tolerance * abs(stats[0][column]) + 1e-12, column
    a, b = single.last_trpo_step, split.last_trpo_step
    assert _relative(a.gradient, b.gradient) < tolerance
    assert _relative(a.direction, b.direction) < tolerance
    assert abs(a.initial_step_size - b.initial_step_size) < tolerance * a.initial_step_size
    assert a.accepted and a.backtracks == b.backtracks
    update = single.policy.get_flat() - theta0
    assert _relative(update, split.policy.get_flat() - theta0) < tolerance
    assert np.linalg.norm(update) > 1e-3 * np.linalg.norm(theta0)  # a real step was taken


def test_the_distributed_trainer_refuses_jit_compile(strategy):
    """Its all-reduced gradients are graphs of their own: asked for XLA (TrainConfig.jit_compile,
    which rl.train refuses with --distribute), it says so instead of running without it."""
    config = TrainConfig(meta_batch_size=4, fast_batch_size=5, batch_in_steps=False, jit_compile=True)
    with pytest.raises(ValueError, match="jit_compile: the distributed trainer"):
        DistributedMAMLTRPO(Policy(2, 2, seed=3), make_vec_env("point", 4 * 5), config, strategy)


def test_a_run_resumes_with_another_replica_count(tmp_path, small_config, strategy):
    """rl.train's run: iteration 0 on 2 replicas, then the same run resumed on one device (and
    the replica count is no training setting: config.json does not record it). Iteration 0's
    paths equal an uninterrupted one-device run's, and after iteration 1 its weights agree with
    that run's to float32 round-off carried through one more iteration."""
    config = dict(small_config, meta_batch_size=4, fast_batch_size=4, max_path_length=20, hidden_sizes=[16, 16])
    straight, moved = str(tmp_path / "straight"), str(tmp_path / "moved")
    run(dict(config, n_itr=2), straight)
    run(dict(config, n_itr=1), moved, strategy)
    run(dict(config, n_itr=2), moved)  # no ConfigMismatch
    with open(os.path.join(moved, "config.json")) as f:
        assert not {"distribute", "cpu_replicas"} & set(json.load(f))
    rows = [np.genfromtxt(os.path.join(d, "progress.csv"), delimiter=",", names=True) for d in (straight, moved)]
    assert list(rows[1]["Iteration"]) == [0, 1]
    for column in ("0AverageReturn", "0MaxReturn", "1AverageReturn", "EnvSteps"):
        assert rows[0][column][0] == rows[1][column][0], column
    (wa, ia), (wb, ib) = trained_weights(straight), trained_weights(moved)
    assert ia == ib == 2
    assert _relative(np.concatenate([w.ravel() for w in wa]), np.concatenate([w.ravel() for w in wb])) < 1e-4


def test_a_split_evaluation_returns_the_single_device_returns(tmp_path, small_config, strategy):
    """rl.evaluate's protocol (4 test tasks, steps 0..3) with the tasks split across 2 replicas
    (each adapting its own) gives every task's returns of one device, bit for bit."""
    logdir = str(tmp_path)
    run(dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8], n_itr=1),
        logdir)
    options = dict(num_tasks=4, task_seed=1, num_trajs=4, num_steps=3, fast_lr=None, seed=4)
    single, _, _ = evaluate_run(logdir, **options)
    split, _, _ = evaluate_run(logdir, strategy=strategy, **options)
    assert single.shape == (4, 4)
    np.testing.assert_array_equal(single, split)


def test_the_trainer_agrees_to_start_after_the_chiefs_checks(tmp_path, small_config, strategy, monkeypatch):
    """rl.trainer.run with a strategy calls report.distribution.agree_to_start exactly once, after
    the chief's start-up checks and before anything is trained: with failed=False and the run's
    training settings (rl.trainer.job_settings: the TrainConfig without keep_checkpoints /
    sampler_workers, nothing of --distribute) when they pass; with failed=True, and then the
    chief's own error, when its first check (the run's lock, held by another writer) or its last
    (resume with another --fast_lr: ConfigMismatch) fails, nothing of the run changed. And a
    JobStartError from agree_to_start (another process failed or trains other settings) ends the
    run untrained. (On a MirroredStrategy the real agree_to_start has nothing to agree; its
    collective in 2 processes: tests/rl/test_rl_distributed_multi_worker.py.)"""
    from report.distribution import JobStartError
    from report.run_lock import RunLock, RunLockedError
    from rl.run_io import ConfigMismatch
    from rl.trainer import job_settings

    calls = []
    monkeypatch.setattr("report.distribution.agree_to_start",
                        lambda s, failed, settings: calls.append((s, failed, settings)))
    config = dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8],
                  n_itr=0)
    logdir = str(tmp_path / "run")
    run(config, logdir, strategy)  # n_itr=0: saves the initial policy (ckpt-0)
    assert calls == [(strategy, False, job_settings(TrainConfig.from_dict(config)))]
    settings = calls[0][2]
    assert settings["fast_lr"] == 0.5 and settings["n_itr"] == 0
    assert not {"keep_checkpoints", "sampler_workers", "distribute", "cpu_replicas", "join_timeout"} & set(settings)
    before = sorted(os.listdir(os.path.join(logdir, "checkpoints")))

    calls.clear()
    with RunLock(logdir), pytest.raises(RunLockedError):
        run(config, logdir, strategy)
    with pytest.raises(ConfigMismatch, match="fast_lr"):
        run(dict(config, fast_lr=0.2), logdir, strategy)
    assert [failed for _, failed, _ in calls] == [True, True]
    with open(os.path.join(logdir, "config.json")) as f:
        assert json.load(f)["fast_lr"] == 0.5

    def refuse(s, failed, settings):
        raise JobStartError("another worker's training flags differ from the chief's")

    monkeypatch.setattr("report.distribution.agree_to_start", refuse)
    with pytest.raises(JobStartError):
        run(dict(config, n_itr=1), logdir, strategy)
    assert sorted(os.listdir(os.path.join(logdir, "checkpoints"))) == before
    assert not os.path.exists(os.path.join(logdir, "progress.csv"))


@pytest.mark.parametrize("module, args, flag", [
    ("rl.train", ["--logdir={tmp}/run", "--meta_batch_size=3"], "--meta_batch_size=3"),
    ("rl.evaluate", ["--run=m:{tmp}/run", "--output={tmp}/e.csv", "--num_tasks=5"], "--num_tasks=5"),
])
def test_tasks_that_do_not_split_across_the_replicas_are_one_line(tmp_path, module, args, flag):
    """A meta-batch (rl.train) or test-task count (rl.evaluate) that 2 replicas cannot split
    evenly stops the command with one line naming the flag, before anything is written."""
    result = subprocess.run([sys.executable, "-m", module, "--distribute=mirrored", "--cpu_replicas=2",
                             *[a.format(tmp=tmp_path) for a in args]],
                            capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 1
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert "Traceback" not in result.stderr
    assert last.startswith(f"{module}: error: {flag} does not split evenly across 2 replicas"), result.stderr
    assert os.listdir(tmp_path) == []
