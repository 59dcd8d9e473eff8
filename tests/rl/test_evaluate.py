import csv
import os
import subprocess
import sys

import numpy as np

from rl.adaptation import step_sizes
from rl.envs import paper_test_tasks
from rl.evaluation import COLUMNS, evaluate_run
from rl.trainer import run


def test_test_goals_are_the_originals():
    """The point test goals are test_maml_point.py's: np.random.seed(1); uniform(-0.5, 0.5, (40, 2))."""
    np.random.seed(1)
    expected = np.random.uniform(-0.5, 0.5, size=(40, 2))
    np.testing.assert_array_equal(paper_test_tasks("point", 40, 1), expected)


def test_step_size_schedule_alpha_then_half():
    """The released test scripts' schedule: alpha, then alpha/2."""
    assert step_sizes(0.5, 3) == [0.5, 0.25, 0.25]


def test_evaluate_random_run_and_cli_csv(tmp_path, small_config, dead_pid):
    """evaluate_run's returns of a random policy are plausible; rl.evaluate writes the summary
    csv (COLUMNS, one row per step) and the per-task csv, and removes what an interrupted
    write of those two left (`eval.csv.tmp<pid>`), not another file's temporary."""
    logdir = str(tmp_path / "random")
    run(dict(small_config, mode="random"), logdir)
    reports = []

    def progress(total):
        reports.append(total)
        return reports.append

    returns, lr, env = evaluate_run(logdir, num_tasks=3, task_seed=1, num_trajs=2, num_steps=2,
                                    fast_lr=None, seed=0, progress=progress)
    assert reports == [3, 1, 2, 3]  # told 3 sampling passes (steps 0..2), then each one done
    assert returns.shape == (3, 3) and lr == 0.5 and env == "point"
    assert np.all(returns < 0) and np.all(returns >= -100 * 10)  # distance to goal at most ~10
    out = tmp_path / "eval.csv"
    for leftover in (f"eval.csv.tmp{dead_pid}", f"eval_per_task.csv.tmp{dead_pid}", f"other.csv.tmp{dead_pid}"):
        (tmp_path / leftover).write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "rl.evaluate", f"--run=random:{logdir}", f"--output={out}",
         "--num_tasks=3", "--num_trajs=2", "--num_steps=1"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr
    assert "random: sampling passes 2/2 (" in result.stderr  # the progress line, at the end
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == COLUMNS
    assert [(r["method"], r["task"], r["step"], r["num_tasks"]) for r in rows] == [
        ("random", "point", "0", "3"), ("random", "point", "1", "3")]
    assert {(r["mode"], r["design"]) for r in rows} == {("random", "")}  # the released protocol: nothing to say
    assert {r["checkpoint"] for r in rows} == {"ckpt-0"}  # a random run's one checkpoint: its initial policy
    assert f"Evaluating random ({logdir}) ckpt-0 on 3 tasks" in result.stderr  # no "partway" for a random run
    assert float(rows[0]["stderr"]) > 0
    assert os.path.exists(tmp_path / "eval_per_task.csv")
    assert [name for name in os.listdir(tmp_path) if ".tmp" in name] == [f"other.csv.tmp{dead_pid}"]


def test_evaluate_without_checkpoint_fails_clearly(tmp_path):
    """A --run that is no run directory: a one-line error naming config.json, no csv."""
    result = subprocess.run(
        [sys.executable, "-m", "rl.evaluate", f"--run=maml:{tmp_path}", f"--output={tmp_path}/e.csv"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode != 0
    assert "config.json not found" in result.stderr.splitlines()[-1]
    assert not os.path.exists(tmp_path / "e.csv")


def test_evaluation_passes_the_protocols_collector_to_the_sampler(tmp_path, small_config, monkeypatch):
    """The protocol's collector_workers reaches every rollout of the evaluation."""
    import rl.adaptation
    seen = []
    real = rl.adaptation.rollout

    def spy(*args, **kwargs):
        seen.append(kwargs.get("collector_workers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(rl.adaptation, "rollout", spy)
    logdir = str(tmp_path / "random")
    run(dict(small_config, mode="random"), logdir)
    from rl.evaluation import protocol
    proto = protocol(logdir, num_trajs=2, collector_workers=4)  # the released test_maml_point.py's n_parallel
    evaluate_run(logdir, num_tasks=2, num_steps=1, fast_lr=None, seed=0, **proto)
    assert seen == [4, 4]
