"""MAML-TRPO on tf.distribute across processes (rl/distributed.py): 2 workers on localhost
(TF_CONFIG, tests/cluster.py), one CPU replica each, against one process. One meta-iteration
takes the single-process step, rl.evaluate's returns are the single-process ones, SIGTERM to one
worker stops the whole job at one iteration and the same command resumes it from the chief's
checkpoint, and a lost worker ends the others with one line. Before training (evaluating) the
processes agree to start: a worker with other training flags, or one whose --run is missing,
ends every process with one line; a worker alone ends after --join_timeout. Each job starts two TensorFlow processes: 15-20 s per test on
2 shared cores (under 10 s for a job refused at its start), about 55 s for the SIGTERM test
(three jobs)."""
import csv
import json
import os
import signal
import time

import numpy as np
import pytest

from cluster import run_workers, start_workers  # tests/cluster.py
from rl.config import TrainConfig
from rl.envs import make_vec_env
from rl.evaluation import evaluate_run
from rl.maml import MAMLTRPO
from rl.policy import Policy
from rl.trainer import run
from run_files import trained_weights

TINY_FLAGS = ["--meta_batch_size=2", "--fast_batch_size=2", "--max_path_length=10", "--hidden_sizes=8,8", "--seed=3"]
ITERATION_CONFIG = dict(fast_lr=0.5, meta_batch_size=4, fast_batch_size=5, max_path_length=50, hidden_sizes=[32, 32],
                        seed=3, batch_in_steps=False)
SUCCESS_TOL = 0.2  # goals count as reached within 0.2: paths end early, tasks have different step counts

# One float64 MAML-TRPO iteration as a worker of the job; the chief saves what it did.
ONE_ITERATION = """
import json, sys
import numpy as np
import pytest
from report.distribution import is_chief, make_strategy
strategy = make_strategy("multi_worker")
import rl.envs.point
rl.envs.point.SUCCESS_TOL = float(sys.argv[3])
from rl.config import TrainConfig
from rl.distributed import DistributedMAMLTRPO
from rl.envs import make_vec_env
from rl.policy import Policy
config = TrainConfig(**json.loads(sys.argv[1]))
learner = DistributedMAMLTRPO(Policy(2, 2, config.hidden_sizes, dtype="float64", seed=config.seed),
                              make_vec_env("point", 2 * config.fast_batch_size), config, strategy)
theta0 = learner.policy.get_flat()
stats = learner.iteration(np.random.default_rng(7))
step = learner.last_trpo_step
if is_chief(strategy):
    np.savez(sys.argv[2], theta0=theta0, theta1=learner.policy.get_flat(), gradient=step.gradient,
             direction=step.direction, step_size=step.initial_step_size, stats=json.dumps(stats))
"""


def _relative(a, b):
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(a))


def _last_line(stderr):
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.strip()][-1]


def _succeeded(results):
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    return results


def test_two_workers_make_the_single_process_meta_update(tmp_path, monkeypatch):
    """One float64 MAML-TRPO iteration on the point task with 4 tasks, 2 per worker process, each
    sampling its own tasks with its rows of the batch's noise: the same paths as one process
    (as many paths and steps; returns to round-off: a forward pass over 2 tasks' envs is not
    bitwise one over 4), the same surrogate gradient, conjugate-gradient direction, step size,
    accepted backtrack, and the same update theta_1 - theta_0, all to 1e-12 relative. Paths end
    early (`SUCCESS_TOL`), so the workers hold different numbers of query steps: the KL must be
    weighted by steps across processes."""
    out = str(tmp_path / "chief.npz")
    _succeeded(run_workers(["-c", ONE_ITERATION, json.dumps(ITERATION_CONFIG), out, str(SUCCESS_TOL)]))
    monkeypatch.setattr("rl.envs.point.SUCCESS_TOL", SUCCESS_TOL)
    chief = np.load(out)
    config = TrainConfig(**ITERATION_CONFIG)
    single = MAMLTRPO(Policy(2, 2, config.hidden_sizes, dtype="float64", seed=config.seed),
                      make_vec_env("point", 4 * config.fast_batch_size), config)
    theta0 = single.policy.get_flat()
    np.testing.assert_array_equal(theta0, chief["theta0"])
    stats, split_stats = single.iteration(np.random.default_rng(7)), json.loads(str(chief["stats"]))
    steps = single.last_iteration["query_batch"].mask.sum(axis=(1, 2))
    assert steps[:2].sum() != steps[2:].sum() and steps.max() < 250, steps
    for column in ("0NumTrajs", "1NumTrajs", "EnvSteps", "Backtracks", "StepAccepted"):
        assert stats[column] == split_stats[column], column
    for column in ("0AverageReturn", "0StdReturn", "0MaxReturn", "0MinReturn", "1AverageReturn", "1StdReturn",
                   "1MaxReturn", "1MinReturn", "LossBefore", "LossAfter", "MeanKL"):
        assert abs(stats[column] - split_stats[column]) <= 1e-12 * abs(stats[column]) + 1e-15, column
    step = single.last_trpo_step
    assert _relative(step.gradient, chief["gradient"]) < 1e-12
    assert _relative(step.direction, chief["direction"]) < 1e-12
    assert abs(step.initial_step_size - float(chief["step_size"])) < 1e-12 * step.initial_step_size
    update = single.policy.get_flat() - theta0
    assert _relative(update, chief["theta1"] - theta0) < 1e-12
    assert np.linalg.norm(update) > 1e-3 * np.linalg.norm(theta0)


def test_a_two_worker_evaluation_writes_the_single_process_returns(tmp_path, small_config):
    """rl.evaluate --distribute=multi_worker on 2 processes (4 test tasks, 2 each, steps 0..3):
    the chief writes the per-task returns one process computes; the other worker writes nothing."""
    logdir = str(tmp_path / "run")
    run(dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8], n_itr=1),
        logdir)
    single, _, _ = evaluate_run(logdir, num_tasks=4, task_seed=1, num_trajs=4, num_steps=3, fast_lr=None, seed=4)
    output = str(tmp_path / "out" / "eval.csv")
    os.makedirs(os.path.dirname(output))
    _succeeded(run_workers(["-m", "rl.evaluate", f"--run=maml:{logdir}", f"--output={output}", "--num_tasks=4",
                            "--num_trajs=4", "--distribute=multi_worker"]))
    with open(str(tmp_path / "out" / "eval_per_task.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["mean_return"] for r in rows] == [f"{v:.4f}" for v in single.ravel()]
    assert sorted(os.listdir(tmp_path / "out")) == ["eval.csv", "eval_per_task.csv"]


def test_sigterm_stops_a_multi_worker_evaluation_in_one_line(tmp_path, small_config):
    """SIGTERM to every worker of a running rl.evaluate job: each ends with rl.evaluate's one line
    and status 143 and no csv is written. TensorFlow's multi-worker strategy installs its own
    SIGTERM handler when it is built (one that lets the evaluation run on to its end): rl.evaluate
    takes the signal back after building it (report.stop.interrupt_where_it_is)."""
    logdir = str(tmp_path / "run")
    run(dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8], n_itr=1),
        logdir)
    output = str(tmp_path / "out" / "eval.csv")
    os.makedirs(os.path.dirname(output))
    workers = start_workers(["-m", "rl.evaluate", f"--run=maml:{logdir}", f"--output={output}", "--num_tasks=400",
                             "--num_trajs=4", "--num_steps=40", "--distribute=multi_worker"])
    try:
        lines = []
        for line in workers[0].stderr:  # the chief evaluates: every worker has built its strategy
            lines.append(line)
            if "Evaluating maml" in line:
                break
        for w in workers:
            w.send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        for w in workers:
            w.kill()
    stderrs = ["".join(lines) + outputs[0][1], outputs[1][1]]
    assert [w.returncode for w in workers] == [143, 143], [e[-3000:] for e in stderrs]
    assert [_last_line(e) for e in stderrs] == ["rl.evaluate: interrupted (SIGTERM); no csv written"] * 2
    assert os.listdir(tmp_path / "out") == []


def test_a_worker_with_other_training_flags_is_refused_on_every_process(tmp_path):
    """Worker 1 started with another --fast_lr than the chief: before anything is trained both
    processes end (exit status 1) with one line each, the worker's saying its training flags
    differ from the chief's, the chief's that another worker's do, both naming fast_lr (report.distribution.
    agree_to_start after rl.trainer's start-up, with rl.trainer.job_settings); the chief wrote no
    checkpoint and no progress.csv. A few seconds of start-up, no iteration."""
    logdir = str(tmp_path / "run")
    results = run_workers(_train_args(logdir, 1), per_worker_args=[[], ["--fast_lr=0.2"]])
    lines = [_last_line(err) for _, _, err in results]
    assert [code for code, _, _ in results] == [1, 1], lines
    assert lines[0].startswith("rl.train: error: another worker's training flags differ from the chief's (fast_lr)"), lines
    assert lines[1].startswith("rl.train: error: this worker's training flags differ from the chief's (fast_lr)"), lines
    assert not os.path.exists(os.path.join(logdir, "progress.csv"))
    assert not os.path.exists(os.path.join(logdir, "checkpoints", "checkpoint"))


def test_a_worker_without_the_run_ends_the_evaluation_on_every_process(tmp_path, small_config):
    """rl.evaluate --distribute=multi_worker where worker 1 is also given a --run whose directory
    does not exist there (as on a machine without a copy of the run): it ends with its one line
    naming that --run, the chief with one line saying another process failed its start-up checks
    (exit status 1 both, nothing evaluated, no csv written), instead of waiting on a collective
    the worker left."""
    logdir = str(tmp_path / "run")
    run(dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8], n_itr=0),
        logdir)
    output = str(tmp_path / "out" / "eval.csv")
    os.makedirs(os.path.dirname(output))
    missing = str(tmp_path / "elsewhere")
    results = run_workers(["-m", "rl.evaluate", f"--run=maml:{logdir}", f"--output={output}", "--num_tasks=2",
                           "--num_trajs=2", "--distribute=multi_worker"],
                          per_worker_args=[[], [f"--run=maml:{missing}"]])
    lines = [_last_line(err) for _, _, err in results]
    assert [code for code, _, _ in results] == [1, 1], lines
    assert lines[0].startswith("rl.evaluate: error: 1 other process(es) of the job failed their start-up checks"), \
        lines
    assert lines[1].startswith(f"rl.evaluate: error: --run=maml:{missing}: "), lines
    assert os.listdir(tmp_path / "out") == []


def test_a_worker_alone_ends_after_join_timeout_with_one_line(tmp_path):
    """Worker 0 of a 2-worker TF_CONFIG started alone: TensorFlow would wait for worker 1 forever;
    after --join_timeout=2 report.distribution's watchdog prints rl.train's one line naming the
    flag and kills it. Nothing is written to --logdir (the strategy comes before the run)."""
    (worker,) = start_workers([*_train_args(str(tmp_path / "run"), 1), "--join_timeout=2"], only=[0])
    try:
        _, stderr = worker.communicate(timeout=120)
    finally:
        worker.kill()
    assert worker.returncode == -9, stderr[-3000:]  # killed: TensorFlow holds the interpreter while it waits
    assert _last_line(stderr) == ("rl.train: error: not every worker of TF_CONFIG started within --join_timeout=2 s; "
                                  "start the same command on every worker listed there")
    assert os.listdir(tmp_path) == []


def _start_training(logdir, n_itr=100000):
    """Start a 2-worker rl.train job; return the processes once the chief saved a checkpoint."""
    processes = start_workers(_train_args(logdir, n_itr))
    deadline = time.time() + 120
    while not os.path.exists(os.path.join(logdir, "checkpoints", "checkpoint")):
        if any(p.poll() is not None for p in processes) or time.time() > deadline:
            for p in processes:
                p.kill()
            raise AssertionError([p.communicate() for p in processes])
        time.sleep(0.1)
    return processes


def _train_args(logdir, n_itr):
    return ["-m", "rl.train", f"--logdir={logdir}", f"--n_itr={n_itr}", "--distribute=multi_worker", *TINY_FLAGS]


@pytest.mark.slow  # ~55 s / ~16 s; the default suite proves the same stop / lost-worker handling
# (report.distribution.AgreedStop, one line) with maml_tf.main in tests/test_distributed_multi_worker.py
def test_sigterm_to_one_worker_stops_the_job_and_the_same_command_resumes(tmp_path):
    """SIGTERM to worker 1 of a running job: both workers stop at the same iteration K (the chief
    saved ckpt-K), each with one line and exit status 143; the same command (extended to K + 2
    iterations) then resumes both at K from the chief's checkpoint (its weights and sampling RNG
    state sent to worker 1) and ends bit for bit like an uninterrupted job of K + 2 iterations
    (weights and progress.csv)."""
    logdir = str(tmp_path / "run")
    processes = _start_training(logdir)
    processes[1].send_signal(signal.SIGTERM)
    try:
        outputs = [p.communicate(timeout=120) for p in processes]
    finally:
        for p in processes:
            p.kill()
    lines = [_last_line(err) for _, err in outputs]
    assert [p.returncode for p in processes] == [143, 143], lines
    stopped_at = {int(line.rsplit("resume at iteration ", 1)[1]) for line in lines}
    assert len(stopped_at) == 1, lines
    k = stopped_at.pop()
    for line in lines:
        assert line.startswith("rl.train: stopped by SIGTERM after ") and \
            "run the same command on every worker to resume" in line, line
    assert f"ckpt-{k} saved" in lines[0] and f"the chief saved ckpt-{k}" in lines[1]
    assert trained_weights(logdir)[1] == k

    results = _succeeded(run_workers(_train_args(logdir, k + 2)))
    assert f"Resumed from {os.path.join(logdir, 'checkpoints', f'ckpt-{k}')} at iteration {k}" in results[0][2]
    assert f"Resuming at iteration {k} with the chief's checkpoint" in results[1][2]
    straight = str(tmp_path / "straight")
    _succeeded(run_workers(_train_args(straight, k + 2)))
    (wa, ia), (wb, ib) = trained_weights(straight), trained_weights(logdir)
    assert ia == ib == k + 2
    for a, b in zip(wa, wb):
        np.testing.assert_array_equal(a, b)
    assert _rows(straight) == _rows(logdir) and len(_rows(logdir)) == k + 2


def _rows(logdir, timing=("ItrTime", "SampleTime", "EnvStepsPerSec", "Time")):
    with open(os.path.join(logdir, "progress.csv"), newline="") as f:
        return [{c: v for c, v in r.items() if c not in timing} for r in csv.DictReader(f)]


@pytest.mark.slow  # ~55 s / ~16 s; the default suite proves the same stop / lost-worker handling
# (report.distribution.AgreedStop, one line) with maml_tf.main in tests/test_distributed_multi_worker.py
def test_a_lost_worker_ends_the_job_with_one_line(tmp_path):
    """Worker 1 killed (SIGKILL) in the middle of training: the chief notices in its next
    collective and ends with one line (report.distribution.lost_contact_message) saying what
    happened and to rerun the command on every worker once the lost one is fixed (exit status
    1); its last checkpoint is intact."""
    logdir = str(tmp_path / "run")
    processes = _start_training(logdir)
    processes[1].kill()
    try:
        _, stderr = processes[0].communicate(timeout=120)
    finally:
        processes[0].kill()
        processes[1].communicate()
    assert processes[0].returncode == 1, stderr[-3000:]
    line = _last_line(stderr)
    assert line.startswith("rl.train: error: lost contact with another process of the job (") and \
        line.endswith("rerun the same command on every worker to resume from the chief's newest checkpoint"), line
    assert trained_weights(logdir)[1] >= 1
