"""rl.evaluate's designs beyond the released test scripts: the spring-2017 step schedule, the same
sampling seed for every task, random inits over several seeds, rows per direction."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rl.adaptation import step_sizes
from rl.evaluation import (COLUMNS, direction_rows, evaluate_run, evaluation_tasks, protocol, schedule_scales,
                           seed_mean_rows, summary_rows)
from rl.trainer import run

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture
def point_random(tmp_path, small_config):
    logdir = str(tmp_path / "point_random")
    run(dict(small_config, mode="random"), logdir)
    return logdir


@pytest.fixture
def cheetah_dir_random(tmp_path, small_config):
    """A random cheetah direction policy with 20-step paths (seconds per evaluation)."""
    logdir = str(tmp_path / "cheetah_dir_random")
    run(dict(small_config, env="cheetah_dir", mode="random", max_path_length=20, fast_lr=0.1), logdir)
    return logdir


def test_step_schedules():
    assert step_sizes(0.1, 3) == [0.1, 0.05, 0.05]  # released: alpha, then alpha/2
    assert step_sizes(0.1, 3, 0.5, 0.5) == [0.05, 0.05, 0.05]  # 25 Feb - 13 Apr 2017: 0.5 alpha at every step
    assert schedule_scales("released") is None
    assert schedule_scales("feb2017") == (0.5, 0.5)
    with pytest.raises(ValueError, match="unknown step schedule 'bogus'"):
        schedule_scales("bogus")


def test_first_step_scale_is_applied(point_random):
    """Step sizes recorded per step, and the first update really is half as long: both runs
    sample the same first batch (same seed), so their first parameter changes differ by 0.5."""
    kwargs = dict(num_tasks=3, task_seed=1, num_trajs=2, num_steps=3, fast_lr=None, seed=0)
    released, feb = [], []
    evaluate_run(point_random, **kwargs, record=released)
    evaluate_run(point_random, **kwargs, first_lr_scale=0.5, later_lr_scale=0.5, record=feb)
    assert [r["step_size"] for r in released] == [0.5, 0.25, 0.25, None]
    assert [r["step_size"] for r in feb] == [0.25, 0.25, 0.25, None]
    np.testing.assert_array_equal(released[0]["batch"].actions, feb[0]["batch"].actions)
    for p0, full, half in zip(released[0]["params"], released[1]["params"], feb[1]["params"]):
        scale = np.abs(full - p0).max() + 1e-12
        np.testing.assert_allclose((half - p0) / scale, 0.5 * (full - p0) / scale, atol=1e-4)
    assert any(np.abs(full - p0).max() > 0 for p0, full in zip(released[0]["params"], released[1]["params"]))


def test_same_sampling_seed_evaluates_every_task_as_if_alone(cheetah_dir_random):
    kwargs = dict(num_tasks=4, task_seed=1, num_trajs=2, num_steps=1, fast_lr=None, seed=0)
    tasks = evaluation_tasks("cheetah_dir", 4, 1)
    assert list(tasks) == [-1.0, 1.0, -1.0, -1.0]
    record = []
    same, lr, env = evaluate_run(cheetah_dir_random, **kwargs, same_sampling_seed=True, record=record)
    assert same.shape == (4, 2) and lr == 0.1 and env == "cheetah_dir"
    # One init and one seed: tasks of one direction give identical returns; each distinct task
    # is sampled once (2 tasks x 2 batches).
    np.testing.assert_array_equal(same[0], same[2])
    np.testing.assert_array_equal(same[0], same[3])
    assert [float(r["task"]) for r in record] == [-1.0, -1.0, 1.0, 1.0]
    # Before any step both directions run the very same paths; only the reward's sign differs.
    backward, forward = record[0]["batch"], record[2]["batch"]
    np.testing.assert_array_equal(backward.observations, forward.observations)
    np.testing.assert_array_equal(backward.actions, forward.actions)
    assert not np.allclose(backward.rewards, forward.rewards)
    # Each task's row is what evaluating that task alone gives (task 0 is the first test task).
    alone, _, _ = evaluate_run(cheetah_dir_random, **dict(kwargs, num_tasks=1))
    np.testing.assert_array_equal(same[0], alone[0])
    # The default design samples all tasks from one stream: same-direction tasks differ.
    default, _, _ = evaluate_run(cheetah_dir_random, **kwargs)
    assert not np.array_equal(default[0], default[2])


def test_init_seed_is_the_policy_rl_train_builds(point_random, tmp_path, small_config):
    kwargs = dict(num_tasks=2, task_seed=1, num_trajs=2, num_steps=1, fast_lr=None, seed=0)
    checkpoint, _, _ = evaluate_run(point_random, **kwargs)  # the run was trained with --seed=3
    same_seed, _, _ = evaluate_run(point_random, **kwargs, init_seed=small_config["seed"])
    other_seed, _, _ = evaluate_run(point_random, **kwargs, init_seed=small_config["seed"] + 1)
    np.testing.assert_array_equal(same_seed, checkpoint)
    assert not np.array_equal(other_seed, checkpoint)
    maml = str(tmp_path / "maml")
    run(dict(small_config, n_itr=0), maml)
    with pytest.raises(ValueError, match="mode 'maml': an init seed only applies to a random-init run"):
        evaluate_run(maml, **kwargs, init_seed=1)


@pytest.mark.parametrize("labels,repeated", [(("random", "random"), "'random', 'random_init1'"),
                                             (("random", "random_init1"), "'random_init1'")])
def test_labels_the_csv_would_repeat_are_refused(point_random, tmp_path, labels, repeated):
    """Each --run's label keys its rows in the csv, and with --init_seeds a random run's rows are
    labelled <label>_init<seed> and their mean <label>: a label given twice, or a second --run
    with one of those labels, would put two runs' rows under one label (report.compare then
    refuses the csv), so rl.evaluate refuses it before evaluating, in one line. (A start-up
    check, after the --run directories are read: under multi_worker every process agrees on it.)"""
    result = subprocess.run([sys.executable, "-m", "rl.evaluate", *(f"--run={label}:{point_random}" for label in labels),
                             "--init_seeds=1", f"--output={tmp_path}/e.csv"], capture_output=True, text=True,
                            timeout=300, env=ENV)
    assert result.returncode == 1 and not os.path.exists(tmp_path / "e.csv")
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"rl.evaluate: error: --run: the csv would hold two runs' rows under {repeated} (with --init_seeds"), \
        result.stderr


def test_seed_mean_and_direction_rows():
    a = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 4.0]])
    b = np.array([[3.0, 0.0], [5.0, 2.0], [7.0, 4.0]])
    rows = seed_mean_rows("random", "cheetah_dir", [a, b], 20, 1.0)
    # seed means: step 0: 3, 5 -> 4 +- 1; step 1: 4, 2 -> 3 +- 1
    assert rows == [["random", "cheetah_dir", 0, "4.0000", "1.0000", 3, 20, 1.0],
                    ["random", "cheetah_dir", 1, "3.0000", "1.0000", 3, 20, 1.0]]
    # One seed: its mean over tasks, and no spread to estimate (nan, as summary_rows for one task).
    assert seed_mean_rows("random", "cheetah_dir", [a], 20, 1.0) == [
        ["random", "cheetah_dir", 0, "3.0000", "nan", 3, 20, 1.0], ["random", "cheetah_dir", 1, "4.0000", "nan", 3, 20, 1.0]]
    tasks = np.array([-1.0, 1.0, -1.0])
    one = direction_rows("random_init1", "cheetah_dir", [a], tasks, 20, 1.0)
    assert one == (summary_rows("random_init1", "cheetah_dir:backward", a[[0, 2]], 20, 1.0) +
                   summary_rows("random_init1", "cheetah_dir:forward", a[[1]], 20, 1.0))
    assert [r[3] for r in one] == ["3.0000", "3.0000", "3.0000", "6.0000"]
    assert [r[5] for r in one] == [2, 2, 1, 1]
    both = direction_rows("random", "cheetah_dir", [a, b], tasks, 20, 1.0)
    assert both == (seed_mean_rows("random", "cheetah_dir:backward", [a[[0, 2]], b[[0, 2]]], 20, 1.0) +
                    seed_mean_rows("random", "cheetah_dir:forward", [a[[1]], b[[1]]], 20, 1.0))


def test_cli_feb2017_schedule_same_seed_init_seeds_by_direction(cheetah_dir_random, tmp_path):
    out = tmp_path / "eval.csv"
    result = subprocess.run(
        [sys.executable, "-m", "rl.evaluate", f"--run=random:{cheetah_dir_random}", f"--output={out}",
         "--num_tasks=4", "--num_trajs=2", "--num_steps=2", "--step_schedule=feb2017", "--same_sampling_seed",
         "--init_seeds=1,2", "--by_direction"],
        capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr
    assert "step sizes [0.05, 0.05]; the same sampling seed for every task" in result.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == COLUMNS
    assert [(r["method"], r["step"]) for r in rows] == [
        (m, str(s)) for m in ("random_init1", "random_init2", "random") for s in range(3)]
    # What the run was trained as, and how this evaluation departs from the released protocol.
    assert {(r["mode"], r["design"]) for r in rows} == {("random", "step_schedule=feb2017;same_sampling_seed")}
    mean = [np.mean([float(r["mean_return"]) for r in rows if r["method"] == m and r["step"] == "2"])
            for m in ("random_init1", "random_init2")]
    assert float(rows[-1]["mean_return"]) == pytest.approx(np.mean(mean), abs=1e-4)
    with open(tmp_path / "eval_by_direction.csv", newline="") as f:
        split = list(csv.DictReader(f))
    assert list(split[0].keys()) == COLUMNS and split[0]["mode"] == "random"
    assert [(r["method"], r["task"], r["num_tasks"]) for r in split if r["step"] == "0"] == [
        (m, f"cheetah_dir:{d}", n) for m in ("random_init1", "random_init2", "random")
        for d, n in (("backward", "3"), ("forward", "1"))]
    with open(tmp_path / "eval_per_task.csv", newline="") as f:
        per_task = list(csv.DictReader(f))
    backward = {r["mean_return"] for r in per_task if r["method"] == "random_init1" and r["step"] == "1"
                and r["task_index"] in ("0", "2", "3")}
    assert len(backward) == 1  # the same seed: one value per direction


_ERRORS = """
import json, sys
from rl import evaluate
logdirs = json.loads(sys.argv[1])
out = {}
for name, args in json.loads(sys.argv[2]).items():
    evaluate.FLAGS.unparse_flags()
    argv = ["rl.evaluate", "--output=" + logdirs["out"], *[a.format(**logdirs) for a in args]]
    evaluate.FLAGS(argv)
    try:
        evaluate.main(["rl.evaluate"])
        out[name] = None
    except SystemExit as e:
        out[name] = str(e.code)
print(json.dumps(out))
"""


def test_cli_errors_are_one_line(point_random, tmp_path, small_config):
    maml = str(tmp_path / "maml")
    run(dict(small_config, n_itr=0), maml)
    cases = {
        "schedule": ["--run=r:{random}", "--step_schedule=bogus"],
        "schedule_and_scale": ["--run=r:{random}", "--step_schedule=feb2017", "--later_lr_scale=0.3"],
        "first_scale": ["--run=r:{random}", "--first_lr_scale=0"],
        "seeds_not_int": ["--run=r:{random}", "--init_seeds=1,x"],
        "seeds_repeated": ["--run=r:{random}", "--init_seeds=2,2"],
        "seeds_no_random_run": ["--run=m:{maml}", "--init_seeds=1"],
        "direction_no_direction_run": ["--run=r:{random}", "--by_direction"],
    }
    dirs = {"random": point_random, "maml": maml, "out": str(tmp_path / "e.csv")}
    result = subprocess.run([sys.executable, "-c", _ERRORS, json.dumps(dirs), json.dumps(cases)],
                            capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {
        "schedule": "--step_schedule: unknown step schedule 'bogus' (known: released, feb2017)",
        "schedule_and_scale": "--step_schedule=feb2017 sets the step sizes; drop --later_lr_scale",
        "first_scale": "--first_lr_scale must be > 0 (got 0.0)",
        "seeds_not_int": "--init_seeds must be comma-separated integers (got 1,x)",
        "seeds_repeated": "--init_seeds repeats a seed (got 2,2)",
        "seeds_no_random_run": "--init_seeds applies to runs trained with --mode=random; no --run is one",
        "direction_no_direction_run": "--by_direction needs a run of a direction task (cheetah_dir, ant_dir)",
    }
    for name, message in expected.items():
        assert errors[name] == f"rl.evaluate: error: {message}", name
        assert "\n" not in errors[name]
    assert not os.path.exists(tmp_path / "e.csv")


def test_protocol_keeps_the_released_schedule_by_default(point_random):
    assert protocol(point_random)["later_lr_scale"] == 0.5
    assert step_sizes(0.5, 3, protocol(point_random)["later_lr_scale"]) == [0.5, 0.25, 0.25]
