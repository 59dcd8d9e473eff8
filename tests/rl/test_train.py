import csv
import functools
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from rl import run_io
from run_files import trained_weights
from rl.config import TrainConfig
from rl.envs import make_vec_env
from rl.maml import MAMLTRPO
from rl.policy import Policy
from rl.trainer import run


def test_meta_iterations_post_update_beats_pre_update():
    """Three MAML-TRPO iterations on the point task: the adapted policies' returns beat the
    unadapted policy's by 5 on average, and every step keeps the KL bound."""
    tf.random.set_seed(0)
    learner = MAMLTRPO(Policy(2, 2, seed=0), make_vec_env("point", 10 * 10),
                       TrainConfig(fast_lr=0.5, meta_batch_size=10, fast_batch_size=10, batch_in_steps=False))
    rng = np.random.default_rng(0)
    stats = [learner.iteration(rng) for _ in range(3)]
    pre = np.mean([s["0AverageReturn"] for s in stats])
    post = np.mean([s["1AverageReturn"] for s in stats])
    assert post > pre + 5, (pre, post)
    assert all(s["MeanKL"] <= 0.01 for s in stats)
    assert any(s["StepAccepted"] for s in stats)




def _progress(logdir):
    with open(os.path.join(logdir, "progress.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_interrupted_run_resumes_exactly(tmp_path, small_config):
    """Two iterations straight, or one and a resumed second: the same weights bit for bit, the
    same progress.csv rows (the RNG state is checkpointed), the rllab columns present, and the
    sampling's share of each iteration (SampleTime, both batches' rollouts) within ItrTime."""
    SMALL = small_config
    straight, resumed = str(tmp_path / "a"), str(tmp_path / "b")
    run(dict(SMALL, n_itr=2), straight)
    run(dict(SMALL, n_itr=1), resumed)
    run(dict(SMALL, n_itr=2), resumed)  # same command, continues at iteration 1
    (wa, ia), (wb, ib) = trained_weights(straight), trained_weights(resumed)
    assert ia == ib == 2
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    rows_a, rows_b = _progress(straight), _progress(resumed)
    assert [r["Iteration"] for r in rows_b] == ["0", "1"]
    timing = ("ItrTime", "SampleTime", "EnvStepsPerSec", "Time")
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows_a] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows_b]
    for column in ("Iteration", "0AverageReturn", "1AverageReturn", "LossBefore", "LossAfter",
                   "MeanKLBefore", "MeanKL", "dLoss", "EnvStepsPerSec"):
        assert column in rows_a[0]
    assert all(0 < float(r["SampleTime"]) < float(r["ItrTime"]) for r in rows_a + rows_b)
    assert os.listdir(os.path.join(straight, "tb"))


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_mujoco_run_resumes_exactly(tmp_path, small_config, workers):
    """The envs' start noise is checkpointed too: a resumed run does not replay iteration 0's."""
    config = dict(small_config, env="cheetah_dir", meta_batch_size=2, fast_batch_size=2, max_path_length=10,
                  hidden_sizes=[8, 8], sampler_workers=workers)
    straight, resumed = str(tmp_path / "a"), str(tmp_path / "b")
    run(dict(config, n_itr=2), straight)
    run(dict(config, n_itr=1), resumed)
    run(dict(config, n_itr=2), resumed)
    (wa, _), (wb, _) = trained_weights(straight), trained_weights(resumed)
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    rows_a, rows_b = _progress(straight), _progress(resumed)
    for column in ("0AverageReturn", "1AverageReturn", "LossAfter"):
        assert rows_a[1][column] == rows_b[1][column], column


def test_resuming_with_other_sampler_workers_warns_and_continues(tmp_path, small_config, caplog):
    config = dict(small_config, env="cheetah_dir", meta_batch_size=2, fast_batch_size=2, max_path_length=10,
                  hidden_sizes=[8, 8])
    run(dict(config, n_itr=1, sampler_workers=0), str(tmp_path))
    run(dict(config, n_itr=2, sampler_workers=2), str(tmp_path))
    assert trained_weights(str(tmp_path))[1] == 2
    assert "start-noise RNG states for 1 env processes, this run has 2" in caplog.text


def test_collector_workers_reach_the_sampler(tmp_path, small_config):
    """3 emulated workers, budget 2 x 10 steps of never-ending cheetah paths: 2 + 3 - 1 = 4 paths per task."""
    config = dict(small_config, env="cheetah_dir", meta_batch_size=2, fast_batch_size=2, max_path_length=10,
                  hidden_sizes=[8, 8], n_itr=1, collector_workers=3, batch_in_steps=True)
    run(config, str(tmp_path))
    row = _progress(str(tmp_path))[0]
    assert float(row["0NumTrajs"]) == float(row["1NumTrajs"]) == 2 * 4


def test_resuming_with_other_training_settings_is_refused(tmp_path, small_config):
    """Resuming with another training setting names it; a config.json without a newer key
    compares as the value runs used before it existed; resumable settings may change."""
    run(dict(small_config, n_itr=1), str(tmp_path))
    with pytest.raises(run_io.ConfigMismatch, match=r"--fast_lr: 0.5 -> 0.1"):
        run(dict(small_config, n_itr=2, fast_lr=0.1), str(tmp_path))
    config_path = os.path.join(str(tmp_path), "config.json")
    with open(config_path) as f:  # a run from before --collector_workers existed: it used 1
        old = {k: v for k, v in json.load(f).items() if k != "collector_workers"}
    with open(config_path, "w") as f:
        json.dump(old, f)
    with pytest.raises(run_io.ConfigMismatch, match=r"--collector_workers: 1 -> 8"):
        run(dict(small_config, n_itr=2, collector_workers=8), str(tmp_path))
    run(dict(small_config, n_itr=2, keep_checkpoints=5), str(tmp_path))  # n_itr etc. may change
    assert trained_weights(str(tmp_path))[1] == 2


def test_jit_compiled_trpo_step_takes_the_graph_step(tmp_path, small_config):
    """--jit_compile (XLA for the TRPO step's loss, KL and their gradients) changes round-off
    only: in float64 one meta-iteration from the same weights and seed moves the policy to the
    same parameters as the graph step (1e-9 relative; a different CG direction or line-search
    count would differ at 1e-2). It is a speed setting: a graph run resumes under XLA and back,
    and config.json records the latest."""
    def one_iteration(jit_compile):
        policy = Policy(2, 2, hidden_sizes=(16, 16), dtype="float64", seed=3)
        learner = MAMLTRPO(policy, make_vec_env("point", 4 * 5),
                           TrainConfig(fast_lr=0.5, meta_batch_size=4, fast_batch_size=5, batch_in_steps=False,
                                       jit_compile=jit_compile))
        # The flag reaches the compiled functions (tf.function keeps it as _jit_compile).
        assert all(bool(f._jit_compile) is jit_compile for f in (learner.compiled_surrogate_and_kl,
                                                                 learner.surrogate_gradient, learner.kl_gradient))
        start = [p.numpy().copy() for p in policy.params]
        stats = learner.iteration(np.random.default_rng(0))
        return start, [p.numpy() for p in policy.params], stats

    start, graph, graph_stats = one_iteration(False)
    _, xla, xla_stats = one_iteration(True)  # its loss inputs padded to a multiple of the horizon
    assert graph_stats["Backtracks"] == xla_stats["Backtracks"]
    assert max(np.abs(g - s).max() for g, s in zip(graph, start)) > 1e-4  # the step moved the policy
    for g, x in zip(graph, xla):
        np.testing.assert_allclose(x, g, rtol=1e-9, atol=1e-12)

    config = dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8])
    run(dict(config, n_itr=1), str(tmp_path))
    run(dict(config, n_itr=2, jit_compile=True), str(tmp_path))
    run(dict(config, n_itr=3, jit_compile=False), str(tmp_path))
    assert trained_weights(str(tmp_path))[1] == 3
    with open(os.path.join(str(tmp_path), "config.json")) as f:
        assert json.load(f)["jit_compile"] is False


def _point_learner(**config):
    policy = Policy(2, 2, hidden_sizes=(16, 16), dtype="float64", seed=3)
    return MAMLTRPO(policy, make_vec_env("point", 4 * 5),
                    TrainConfig(fast_lr=0.5, meta_batch_size=4, fast_batch_size=5, batch_in_steps=False, **config))


@pytest.mark.parametrize("use_xla", [True, False])
def test_an_unset_jit_compile_times_the_kl_gradient_then_steps_the_faster_way(use_xla):
    """`time_xla_next` (rl.train, --jit_compile unset): the iteration times its KL gradient as a
    graph on its batches and under XLA on the same batches padded to the horizon (what XLA
    runs), then steps the faster way from there on: XLA's three functions and padded batches, or
    the graphs untouched. Either way the iteration moves the policy where a graph learner's does
    (float64, 1e-9), and the next iteration times nothing."""
    from report.xla_timing import XlaTiming

    timed = []

    def timer(build, run_step):
        for jit_compile in (False, True):
            function, data = build(jit_compile)
            timed.append((jit_compile, bool(function._jit_compile)))
            run_step((function, data))
        return XlaTiming(use_xla, 0.2, 0.1 if use_xla else 0.3)

    reference, learner = _point_learner(), _point_learner()
    graph_functions = (learner.compiled_surrogate_and_kl, learner.surrogate_gradient, learner.kl_gradient)
    reference.iteration(np.random.default_rng(0))
    learner.time_xla_next = True
    learner.choose_compilation = functools.partial(learner.choose_compilation, timer=timer)
    loss_inputs, packed = learner.loss_inputs, []

    def recording_loss_inputs(batch, *args, **kwargs):
        packed.append((kwargs.get("pad_steps_to"), loss_inputs(batch, *args, **kwargs)))
        return packed[-1][1]

    learner.loss_inputs = recording_loss_inputs
    step, stepped_on = learner.step, []
    learner.step = lambda *data: stepped_on.extend(data) or step(*data)
    learner.iteration(np.random.default_rng(0))
    # support and query packed as sampled (the trainer's padding), then both again for XLA
    assert timed == [(False, False), (True, True)] and [pad for pad, _ in packed] == [None, None, 100, 100]
    # the step ran on the batches the kept way packs
    kept = [data for pad, data in packed if (pad == 100) is use_xla]
    assert len(stepped_on) == 2 and all(a is b for a, b in zip(stepped_on, kept))
    for x, g in zip(learner.policy.params, reference.policy.params):
        np.testing.assert_allclose(x.numpy(), g.numpy(), rtol=1e-9, atol=1e-12)
    functions = (learner.compiled_surrogate_and_kl, learner.surrogate_gradient, learner.kl_gradient)
    assert learner.jit_compile is use_xla and learner.pad_steps_to == (100 if use_xla else 1)
    assert all(bool(f._jit_compile) is use_xla for f in functions)
    assert (functions == graph_functions) is not use_xla
    assert learner.time_xla_next is False and learner.xla_timing.use_xla is use_xla
    learner.iteration(np.random.default_rng(1))
    assert len(timed) == 2


def test_the_oracle_times_its_pooled_batch_padded():
    """The oracle's TRPO step (one batch whose advantages pool all tasks' paths, no inner step)
    times the same way: XLA on its batch packed again with pooled advantages and the step axis
    padded to the horizon; chosen, it steps under XLA."""
    from report.xla_timing import XlaTiming
    from rl.envs import PointVecEnv
    from rl.maml import OracleTRPO

    learner = OracleTRPO(Policy(4, 2, hidden_sizes=(8, 8), dtype="float64", seed=3), PointVecEnv(3 * 2, oracle=True),
                         TrainConfig(mode="oracle", meta_batch_size=3, fast_batch_size=2, batch_in_steps=False))
    packed = []
    loss_inputs = learner.loss_inputs
    learner.loss_inputs = lambda *args, **kwargs: packed.append(args[1:] + tuple(kwargs.values())) or loss_inputs(
        *args, **kwargs)
    shapes = []

    def timer(build, run_step):
        for jit_compile in (False, True):
            function, (data,) = build(jit_compile)
            shapes.append((bool(function._jit_compile), tuple(data["mask"].shape)))
        return XlaTiming(True, 0.2, 0.1)

    learner.time_xla_next = True
    learner.choose_compilation = functools.partial(learner.choose_compilation, timer=timer)
    stats = learner.iteration(np.random.default_rng(0))
    assert packed == [(True,), (True, 100)] and [jit for jit, _ in shapes] == [False, True]
    assert shapes[1][1][1] % 100 == 0 and shapes[1][1][1] >= shapes[0][1][1]  # [tasks, steps], steps padded
    assert learner.jit_compile and np.isfinite(stats["LossAfter"])


def test_the_timing_line_says_what_was_found_and_chosen():
    """The one line after the timing: both times and the choice, or XLA's failure and graphs."""
    from report.xla_timing import XlaTiming
    from rl.trainer import xla_choice_line

    assert xla_choice_line(XlaTiming(True, 0.252, 0.236)) == (
        "KL gradient: 252 ms as a graph, 236 ms compiled by XLA: the TRPO step is compiled by XLA")
    assert xla_choice_line(XlaTiming(False, 0.25, 0.26)).endswith("260 ms compiled by XLA: the TRPO step runs as graphs")
    assert xla_choice_line(XlaTiming(False, 0.25, None, "XLA cannot compile op Foo")) == (
        "KL gradient: 250 ms as a graph; XLA failed (XLA cannot compile op Foo): the TRPO step runs as graphs")


def test_the_real_timing_compiles_and_times_both(tmp_path, small_config, monkeypatch, caplog):
    """rl.train with --jit_compile unset times a run with at least XLA_TIMING_MIN_ITERATIONS
    left (lowered to 2 here) on its first batch with report.xla_timing.time_graph_and_xla, says
    what it found and chose in one line, and config.json records the flag as unset (null);
    resumed with 1 iteration left it times nothing; --nojit_compile never times."""
    import logging

    from rl import trainer

    monkeypatch.setattr(trainer, "XLA_TIMING_MIN_ITERATIONS", 2)
    config = dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8])
    with caplog.at_level(logging.INFO, logger="absl"):
        run(dict(config, n_itr=2, jit_compile=None), str(tmp_path / "timed"))
    lines = [r.getMessage() for r in caplog.records if "KL gradient" in r.getMessage()]
    assert lines[0].startswith("Timing the TRPO step's KL gradient as a graph and compiled by XLA")
    assert len(lines) == 2 and re.fullmatch(r"KL gradient: \d+ ms as a graph, \d+ ms compiled by XLA: the TRPO "
                                            r"step (is compiled by XLA|runs as graphs)", lines[1]), lines
    with open(tmp_path / "timed" / "config.json") as f:
        assert json.load(f)["jit_compile"] is None
    for logdir, n_itr, jit_compile in (("timed", 3, None), ("off", 2, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="absl"):
            run(dict(config, n_itr=n_itr, jit_compile=jit_compile), str(tmp_path / logdir))
        assert not any("KL gradient" in r.getMessage() for r in caplog.records)
        assert trained_weights(str(tmp_path / logdir))[1] == n_itr


def test_padding_the_step_axis_changes_no_loss_or_gradient(small_learner):
    """Under --jit_compile each batch's step axis is padded (mask 0) to a multiple of the horizon,
    so that XLA meets a few shapes rather than a new one per iteration: in float64 the meta-
    surrogate, the KL (`MAMLTRPO.surrogate_and_kl`) and the KL gradient the HVPs take are the
    same as on the unpadded batch (1e-12). (Here every path runs the whole horizon, so the
    multiple is 64 for the padding to add steps.)"""
    from rl import objectives as obj

    learner, c = small_learner, small_learner.config
    rng = np.random.default_rng(0)
    tasks = learner.vec_env.sample_tasks(c.meta_batch_size, rng)
    batches = [learner.sample(tasks, rng)[0] for _ in range(2)]  # support, query
    plain = [obj.loss_inputs(b, c.discount, c.gae_lambda, tf.float64) for b in batches]
    padded = [obj.loss_inputs(b, c.discount, c.gae_lambda, tf.float64, pad_steps_to=64) for b in batches]
    for p, q in zip(plain, padded):
        steps = p["mask"].shape[1]
        assert q["mask"].shape[1] == -(-steps // 64) * 64 > steps
        assert float(tf.reduce_sum(q["mask"])) == float(tf.reduce_sum(p["mask"]))
    for a, b in zip(learner.surrogate_and_kl(*plain), learner.surrogate_and_kl(*padded)):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12)
    np.testing.assert_allclose(learner.kl_gradient(*padded)[1].numpy(), learner.kl_gradient(*plain)[1].numpy(),
                               rtol=1e-12, atol=1e-15)


def test_pretrain_mode_takes_adam_steps_on_support_loss(tmp_path, small_config):
    """--mode=pretrain: no query batch, and every Adam step lowers the support batch's loss."""
    SMALL = small_config
    run(dict(SMALL, mode="pretrain", n_itr=2), str(tmp_path))
    rows = _progress(str(tmp_path))
    assert "1AverageReturn" not in rows[0]
    assert all(float(r["LossAfter"]) < float(r["LossBefore"]) for r in rows)


def _train_cli(*args):
    return subprocess.run([sys.executable, "-m", "rl.train", *args], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.parametrize("args, message", [
    (["--meta_batch_size=0"], "--meta_batch_size must be >= 1"),
    (["--mode=metalearn"], "--mode='metalearn' must be one of"),
    (["--fast_lr=-0.5"], "--fast_lr must be > 0"),
    (["--hidden_sizes=100,x"], "--hidden_sizes must be comma-separated integers"),
    (["--jit_compile", "--distribute=mirrored", "--cpu_replicas=2"],
     "--jit_compile is not supported with --distribute=mirrored"),
    (["--jit_compile", "--mode=pretrain"], "--jit_compile compiles the TRPO step, which --mode=pretrain does not take"),
])
def test_bad_flags_give_one_line_error(tmp_path, args, message):
    """A bad flag: one line `rl.train: error: ...`, no traceback, no run directory."""
    result = _train_cli(f"--logdir={tmp_path}/run", *args)
    assert result.returncode != 0
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("rl.train: error: " + message), result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "run")


def test_missing_logdir_is_reported():
    result = _train_cli()
    assert result.returncode != 0 and "--logdir is required" in result.stderr.splitlines()[-1]


def test_eta_is_the_median_iteration_time_times_the_iterations_left():
    """The log line's ETA: the median of this start's iteration times x iterations left, so a
    paused iteration (here 1000 s among 95-100 s ones) does not inflate it as a mean would
    (1000 s pause: mean 280 s, median 97.5 s)."""
    from rl.trainer import time_left

    assert time_left([95.0, 100.0, 1000.0, 97.0, 98.0], 10) == 980.0
    assert time_left([95.0, 100.0, 1000.0, 97.5], 2) == 197.5
    assert time_left([], 5) == 0.0
    assert time_left([90.0], 0) == 0.0
