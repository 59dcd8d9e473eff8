"""Fault injection for maml_tf.main and its library: divergence, damaged checkpoints, changed
settings on resume, two writers, storage failures, stop signals. Each fault must end in a
one-line error or an exact recovery, never a traceback, a non-finite checkpoint or a lost one."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from maml_tf import experiment, main, training
from maml_tf.checkpoints import (Checkpointer, CheckpointDamagedError, CheckpointNotFoundError,
                                 CheckpointWriteError, NonFiniteWeightsError)
from maml_tf.meta_learner import MetaLearner
from maml_tf.sinusoid import SinusoidSampler
from report.stop import GracefulStop, StopRequested
from cli import run_main

SINE_RUN = "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm"


def _learner(update_lr=0.01, seed=0):
    keras.utils.set_random_seed(seed)
    model = experiment.build_model("sinusoid", norm="None")
    return MetaLearner(model, experiment.build_loss("sinusoid", 10)[0], update_lr=update_lr, num_inner_steps=1)


def _train(learner, checkpointer, total, start=0, **kwargs):
    training.train(learner, SinusoidSampler(10, 10), checkpointer, meta_batch_size=5, pretrain_iterations=0,
                   metatrain_iterations=total, start_iteration=start, print_interval=10, summary_interval=5,
                   save_interval=20, **{"print_fn": lambda line: None, **kwargs})


def _last_line(result):
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


# ---- divergence -------------------------------------------------------------------------------

@pytest.mark.parametrize("flag,message", [
    ("--update_lr=nan", "--update_lr must be a finite number > 0, got nan"),
    ("--meta_lr=-1", "--meta_lr must be a finite number > 0, got -1.0"),
    ("--train_update_lr=0", "--train_update_lr must be a finite number > 0 (or -1: unset), got 0.0"),
])
def test_bad_learning_rates_are_refused_before_anything_starts(tmp_path, repo_root, flag, message):
    """Seen before: --update_lr=nan and --meta_lr=-1 trained to the end and wrote NaN checkpoints."""
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", flag], repo_root)
    assert result.returncode == 1
    assert _last_line(result) == f"maml_tf.main: error: {message}"
    assert not os.listdir(tmp_path)


def test_divergence_stops_training_without_saving_non_finite_weights(tmp_path):
    """A step size that blows the inner step up (resumed from a run that saved model-20 and
    model-40 with a sane one): the loss turns non-finite, training stops naming the iteration,
    and the checkpoints on disk are the earlier ones, with finite weights (here the loss is nan at
    iteration 42, before the next save at 60)."""
    sane = _learner()
    _train(sane, Checkpointer(str(tmp_path), sane), 40)
    learner = _learner(update_lr=1e6)
    checkpointer = Checkpointer(str(tmp_path), learner)
    assert checkpointer.restore() == 40
    with pytest.raises(training.DivergenceError, match=r"the training loss is nan at iteration 4[0-9]$") as info:
        _train(learner, checkpointer, 200, start=40)
    assert not info.value.pretraining
    assert checkpointer.available() == [20, 40]
    for iteration in checkpointer.available():
        other = _learner(seed=1)
        Checkpointer(str(tmp_path), other).restore(iteration)
        assert all(np.isfinite(v.numpy()).all() for v in other.variables)


def test_non_finite_weights_are_never_saved(tmp_path):
    learner = _learner()
    learner.variables[0].assign(tf.fill(learner.variables[0].shape, np.nan))
    with pytest.raises(NonFiniteWeightsError, match="not saving model-7"):
        Checkpointer(str(tmp_path), learner).save(7)
    assert not os.path.exists(tmp_path / "model-7.index")


def test_cli_divergence_is_one_line_naming_the_flags(tmp_path, repo_root):
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--update_lr=1e6",
                    "--metatrain_iterations=300"], repo_root)
    assert result.returncode == 1
    line = _last_line(result)
    assert line.startswith("maml_tf.main: error: training diverged: the training loss is nan at iteration ")
    assert "try a smaller --update_lr or --meta_lr" in line


# ---- damaged checkpoints ----------------------------------------------------------------------

@pytest.fixture()
def two_checkpoints(tmp_path):
    """A run with model-20 and model-40 (weights after 20 and 40 iterations)."""
    learner = _learner()
    _train(learner, Checkpointer(str(tmp_path), learner), 40)
    assert Checkpointer(str(tmp_path), learner).available() == [20, 40]
    return tmp_path


def _data_file(run_dir, iteration):
    (path,) = [p for p in os.listdir(run_dir) if p.startswith(f"model-{iteration}.data")]
    return run_dir / path


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "bit_flipped"])
def test_a_damaged_checkpoint_is_named_when_testing_and_skipped_when_resuming(two_checkpoints, damage):
    """Testing reports the damaged file; resuming steps back to model-20, keeps the damaged
    bytes aside (renamed, never deleted or overwritten) and says so."""
    run_dir = two_checkpoints
    data = _data_file(run_dir, 40)
    damage(data)
    damaged_bytes = data.read_bytes()
    with pytest.raises(CheckpointDamagedError, match=r"model-40 is damaged and cannot be read"):
        Checkpointer(str(run_dir), _learner()).restore(-1, required=True)
    warnings = []
    checkpointer = Checkpointer(str(run_dir), _learner())
    assert checkpointer.restore_for_resume(warn=warnings.append) == 20
    assert len(warnings) == 1 and "model-40 is damaged" in warnings[0] and "model-40.damaged" in warnings[0]
    assert (run_dir / data.name.replace("model-40.", "model-40.damaged.")).read_bytes() == damaged_bytes
    assert checkpointer.available() == [20]
    checkpointer.save(40)  # the resumed run reaching 40 again writes a new model-40 beside the kept one
    assert Checkpointer(str(run_dir), _learner()).restore(40) == 40
    assert (run_dir / data.name.replace("model-40.", "model-40.damaged.")).read_bytes() == damaged_bytes


def test_resuming_from_an_earlier_checkpoint_keeps_the_newer_ones(two_checkpoints):
    """`--test_iter=20` while training resumes from model-20, as the original's
    `model_file = ... 'model' + str(FLAGS.test_iter)` did when resuming (main.py); every file of
    a newer checkpoint, which the resumed run would write over (model-40 whole, a model-40
    renamed aside as damaged before, the data of a model-60 without its index), is moved to
    superseded_checkpoints/<time>/ and named, after a copy of `keep_with_superseded` (the record
    of their starts); a user's `model-45.notes.txt` is not a checkpoint file and stays. A
    checkpoint that is not there is a one-line error that moves nothing."""
    run_dir = two_checkpoints
    (run_dir / "model-45.notes.txt").write_text("mine")
    (run_dir / "record.json").write_text("{}")
    (run_dir / "model-40.damaged.index").write_bytes(b"kept from an earlier damage")
    (run_dir / "model-60.data-00000-of-00001").write_bytes(b"a save cut short before its index")
    newer = {name: (run_dir / name).read_bytes() for name in os.listdir(run_dir) if name.startswith(("model-40.", "model-60."))}
    assert len(newer) == 4
    reference = _learner(seed=3)
    Checkpointer(str(run_dir), reference).restore(20)
    with pytest.raises(CheckpointNotFoundError, match=r"no checkpoint model-30 in .* \(available: \[20, 40\]\)"):
        Checkpointer(str(run_dir), _learner()).resume_from(30)
    assert Checkpointer(str(run_dir), _learner()).available() == [20, 40]

    warnings = []
    resumed = _learner(seed=4)
    checkpointer = Checkpointer(str(run_dir), resumed)
    assert checkpointer.resume_from(20, warn=warnings.append, keep_with_superseded=[str(run_dir / "record.json")]) == 20
    for a, b in zip(reference.variables, resumed.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert checkpointer.available() == [20]
    assert not [name for name in os.listdir(run_dir) if name.startswith(("model-40", "model-60"))]
    assert (run_dir / "model-45.notes.txt").read_text() == "mine" and (run_dir / "record.json").exists()
    assert tf.train.latest_checkpoint(str(run_dir)).endswith("model-20")
    (kept,) = os.listdir(run_dir / "superseded_checkpoints")
    folder = run_dir / "superseded_checkpoints" / kept
    assert checkpointer.superseded == str(folder)
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == {**newer, "record.json": b"{}"}
    assert warnings == [f"warning: resuming from model-20 (--test_iter); the files of the newer checkpoints "
                        f"model-40, model-60 are kept in {folder}"]


def test_a_newer_checkpoint_without_its_index_is_renamed_aside_when_resuming(two_checkpoints):
    """The data of a save cut short before its index (model-60) is not a checkpoint to resume
    from, and the resumed run's own save of model-60 would write over it: it is renamed aside as
    damaged, with a warning, before training resumes from model-40; a user's `model-60.notes.txt`
    is left as it is, and stays when model-60 is later pruned."""
    run_dir = two_checkpoints
    (run_dir / "model-60.data-00000-of-00001").write_bytes(b"a save cut short before its index")
    (run_dir / "model-60.notes.txt").write_text("mine")
    warnings = []
    checkpointer = Checkpointer(str(run_dir), _learner())
    assert checkpointer.restore_for_resume(warn=warnings.append) == 40
    assert warnings == [f"warning: {run_dir}/model-60.index is missing (the data file is there): the checkpoint is "
                        f"damaged; kept as {run_dir}/model-60.damaged.*"]
    checkpointer.save(60)
    assert (run_dir / "model-60.damaged.data-00000-of-00001").read_bytes() == b"a save cut short before its index"
    assert Checkpointer(str(run_dir), _learner()).restore(60) == 60
    checkpointer.max_to_keep = 1
    checkpointer.save(80)  # prunes model-40 and model-60's own files
    assert sorted(os.listdir(run_dir)) == ["checkpoint", "model-60.damaged.data-00000-of-00001", "model-60.notes.txt",
                                           "model-80.data-00000-of-00001", "model-80.index"]


def test_cli_test_iter_while_training_resumes_from_that_checkpoint(tmp_path, repo_root):
    """End to end: a run trained to model-5, on to model-8 and on to model-11, then trained again
    to 8 with --test_iter=5, resumes from iteration 5 (as the original) and writes a new model-8 equal to
    the first one (the same tasks are drawn from iteration 5 on), model-8 and model-11 kept aside with
    the run_info.json that recorded their starts; the new run_info.json's starts (which a test reads to
    describe a checkpoint) are those at or before 5, then the new one (0, 5, 5: the start at 8
    is dropped; the first start at 5 trained nothing the new model-8 holds). Refused in one line
    before anything is touched: --test_iter with --noresume, and a --test_iter at or past the
    iterations asked for (nothing would be trained, yet the newer checkpoints moved). As in the
    original (`if FLAGS.test_iter > 0`), --test_iter=0 is the newest checkpoint."""
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--nojit_compile"]
    run_dir = tmp_path / SINE_RUN
    for total in (5, 8, 11):
        result = run_main(args + [f"--metatrain_iterations={total}"], repo_root)
        assert result.returncode == 0, result.stderr
    first_8 = tf.train.load_checkpoint(str(run_dir / "model-8"))
    recorded = json.loads((run_dir / "run_info.json").read_text())
    assert [st["iteration"] for st in recorded["starts"]] == [0, 5, 8]
    for refused_flags, message in (
            (["--metatrain_iterations=8", "--test_iter=5", "--noresume"],
             "--test_iter=5 while training resumes from model-5 (as the original): drop --noresume, or --test_iter to "
             "start a new run (the original started a new run then, ignoring --test_iter)"),
            (["--metatrain_iterations=5", "--test_iter=5"],
             "--test_iter=5: a training resumed from model-5 would train nothing (it is asked for 5 iterations in "
             "all); ask for more, or drop --test_iter")):
        refused = run_main(args + refused_flags, repo_root)
        assert refused.returncode == 1
        assert _last_line(refused) == f"maml_tf.main: error: {message}"
    assert sorted(name for name in os.listdir(run_dir) if name.startswith("model-")) == [
        "model-11.data-00000-of-00001", "model-11.index", "model-5.data-00000-of-00001", "model-5.index",
        "model-8.data-00000-of-00001", "model-8.index"]
    newest = run_main(args + ["--metatrain_iterations=8", "--test_iter=0"], repo_root)
    assert newest.returncode == 0 and "Nothing to do: the run is at iteration 11 of 8." in newest.stdout

    again = run_main(args + ["--metatrain_iterations=8", "--test_iter=5"], repo_root)
    assert again.returncode == 0, again.stderr
    assert f"Resuming {run_dir} from iteration 5" in again.stdout
    (kept,) = os.listdir(run_dir / "superseded_checkpoints")
    folder = run_dir / "superseded_checkpoints" / kept
    assert f"the files of the newer checkpoints model-8, model-11 are kept in {folder}" in again.stderr
    assert sorted(os.listdir(folder)) == ["model-11.data-00000-of-00001", "model-11.index",
                                          "model-8.data-00000-of-00001", "model-8.index", "run_info.json"]
    assert json.loads((folder / "run_info.json").read_text()) == recorded
    assert [st["iteration"] for st in json.loads((run_dir / "run_info.json").read_text())["starts"]] == [0, 5, 5]
    second_8 = tf.train.load_checkpoint(str(run_dir / "model-8"))
    names = sorted(first_8.get_variable_to_shape_map())  # weights, both Adams' state, the iteration
    assert len(names) > 20 and names == sorted(second_8.get_variable_to_shape_map())
    for name in names:
        np.testing.assert_array_equal(first_8.get_tensor(name), second_8.get_tensor(name))


def test_a_missing_index_is_reported_as_damage(two_checkpoints):
    os.remove(two_checkpoints / "model-40.index")
    checkpointer = Checkpointer(str(two_checkpoints), _learner())
    assert checkpointer.available() == [20]
    with pytest.raises(CheckpointDamagedError, match=r"model-40.index is missing"):
        checkpointer.restore(40)


def test_checkpoints_are_found_without_the_state_file(two_checkpoints):
    """A copied run without TensorFlow's `checkpoint` file resumes from its newest checkpoint
    (before, it was reported as having none, and training there overwrote model-20 and -40)."""
    os.remove(two_checkpoints / "checkpoint")
    checkpointer = Checkpointer(str(two_checkpoints), _learner())
    assert checkpointer.restore_for_resume() == 40
    assert tf.train.latest_checkpoint(str(two_checkpoints)).endswith("model-40")  # state file rewritten


def test_cli_test_on_a_damaged_checkpoint_is_one_line(tmp_path, repo_root):
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--metatrain_iterations=5"]
    assert run_main(args, repo_root).returncode == 0
    run_dir = tmp_path / SINE_RUN
    _truncate(_data_file(run_dir, 5))
    result = run_main(args + ["--train=False", "--num_test_tasks=3"], repo_root)
    assert result.returncode == 1
    assert _last_line(result).startswith(f"maml_tf.main: error: {run_dir}/model-5 is damaged and cannot be read")


# ---- settings on resume -----------------------------------------------------------------------

def test_resuming_with_other_training_flags_names_each(tmp_path):
    (tmp_path / "run_info.json").write_text(json.dumps({"training_flags": {"seed": 0, "meta_lr": 0.001,
                                                                           "num_updates": 1}}))
    main.check_resume_flags(str(tmp_path), {"seed": 0, "meta_lr": 0.001, "num_updates": 1})  # same: fine
    with pytest.raises(ValueError, match=r"--seed: 0 -> 1, --meta_lr: 0.001 -> 0.01\); resume it with its own"):
        main.check_resume_flags(str(tmp_path), {"seed": 1, "meta_lr": 0.01, "num_updates": 1})
    main.check_resume_flags(str(tmp_path / "new"), {"seed": 1})  # a new run: nothing to compare
    for damaged in ({"training_flags": [["seed", 0]]}, {"training_flags": {"seed": 0}, "starts": 5}):
        (tmp_path / "run_info.json").write_text(json.dumps(damaged))  # edited by hand: never skipped, never a crash
        with pytest.raises(ValueError, match=r"run_info.json is damaged \(its training_flags or starts"):
            main.check_resume_flags(str(tmp_path), {"seed": 0})


def test_cli_noresume_refuses_to_write_over_a_run(tmp_path, repo_root):
    """--noresume on a run directory holding checkpoints: the original trained from scratch into
    it, writing over its checkpoints and mixing two runs (a later resume then continues the old
    weights under the new flags); here a one-line refusal that leaves every file as it was."""
    run_dir = tmp_path / SINE_RUN
    run_dir.mkdir()
    files = {"model-8.index": b"index", "model-8.data-00000-of-00001": b"data", "run_info.json": b"{}"}
    for name, content in files.items():
        (run_dir / name).write_bytes(content)
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--metatrain_iterations=3",
                       "--noresume"], repo_root)
    assert result.returncode == 1
    assert _last_line(result) == (f"maml_tf.main: error: --noresume: {run_dir} already holds checkpoints (newest "
                                  f"model-8) that a new run would write over and mix with its own; move them "
                                  f"away or use another --logdir")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"} == files


# ---- storage ----------------------------------------------------------------------------------

def test_a_failed_save_keeps_the_previous_checkpoint_and_leaves_no_files(two_checkpoints, monkeypatch):
    """Disk full while writing model-60: a one-line error, model-40 still restores, no partial
    model-60 files and no temporary folder remain."""
    checkpointer = Checkpointer(str(two_checkpoints), _learner())
    real_write = checkpointer.checkpoint.write

    def full_disk(prefix, **kwargs):
        real_write(prefix)  # leave a partial result behind, as a failure late in the write would
        os.makedirs(prefix + "_temp", exist_ok=True)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointer.checkpoint, "write", full_disk)
    with pytest.raises(CheckpointWriteError, match=r"could not write .*model-60 \(.*No space left on device\); "
                                                   r"the checkpoints saved before are intact \(newest: model-40\)"):
        checkpointer.save(60)
    assert not [p for p in os.listdir(two_checkpoints) if "model-60" in p]
    assert Checkpointer(str(two_checkpoints), _learner()).restore(-1) == 40


def test_cli_unwritable_logdir_fails_before_training(tmp_path, repo_root):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={blocker}"], repo_root)
    assert result.returncode == 1
    assert _last_line(result).startswith(f"maml_tf.main: error: the run directory (--logdir) {blocker}/")


# ---- graceful stop, one writer, resume after kill -9 ------------------------------------------

def test_sigterm_saves_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path):
    """SIGTERM after iteration 50 (print hook): the loop stops before iteration 51, saves
    model-51 and raises StopRequested; resuming from 51 to 70 gives bit-identical weights."""
    straight = _learner()
    _train(straight, Checkpointer(str(tmp_path / "straight"), straight), 70)

    def terminate_at_50(line):
        if line.startswith("Iteration 50:"):
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = _learner()
    with GracefulStop() as stop, pytest.raises(StopRequested) as info:
        _train(stopped, Checkpointer(str(tmp_path / "stopped"), stopped), 70, print_fn=terminate_at_50, stop=stop)
    assert info.value.iteration == 51 and info.value.exit_status == 143
    resumed = _learner(seed=5)
    checkpointer = Checkpointer(str(tmp_path / "stopped"), resumed)
    assert checkpointer.restore_for_resume() == 51
    _train(resumed, checkpointer, 70, start=51)
    for a, b in zip(straight.variables, resumed.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_stop_right_after_a_scheduled_save_does_not_write_it_again(tmp_path):
    """A stop asked for just after iteration 40 was saved as model-40 (save interval 20): the
    loop stops without writing model-40 a second time (a second write that failed, disk full,
    removed the files of the first); a stop at 50 still saves model-50."""
    saved = []

    class Recording(Checkpointer):
        def save(self, iteration):
            saved.append(iteration)
            return super().save(iteration)

    class StopAt:
        def __init__(self, iteration):
            self.iteration, self.calls = iteration, 0

        def check(self):
            self.calls += 1
            if self.calls == self.iteration + 1:  # the check before iteration `iteration`
                raise StopRequested(signal.SIGTERM)

    for stop_at, expected in ((40, [20, 40]), (50, [20, 40, 50])):
        saved.clear()
        learner = _learner()
        with pytest.raises(StopRequested) as info:
            _train(learner, Recording(str(tmp_path / str(stop_at)), learner), 70, stop=StopAt(stop_at))
        assert info.value.iteration == stop_at and saved == expected


def test_a_result_on_the_earlier_pool_is_kept_before_a_test_on_the_originals_tasks(tmp_path):
    """A test result written before the fixed pool became the original's tasks (its .json has no
    test_pool) describes other tasks than a test now: it is kept in replaced_tests/ first."""
    from maml_tf import evaluation

    rows = np.ones((3, 11))
    evaluation.write_results(str(tmp_path), 5, 0.01, rows, info={"test_set": False, "checkpoint_iteration": 5,
                                                                 "test_tasks_file": None})
    kept = evaluation.keep_other_result(str(tmp_path), 5, 0.01, {
        "test_set": False, "num_tasks": 3, "test_tasks_file": None, "checkpoint_iteration": 5,
        "test_pool": evaluation.ORIGINAL_POOL})
    assert kept and kept[1] == "test_pool \"maml-tf's earlier pool\" -> 'original'"
    assert sorted(os.listdir(kept[0])) == ["test_ubs5_stepsize0.01.csv", "test_ubs5_stepsize0.01.json",
                                           "test_ubs5_stepsize0.01.pkl"]


def _start_training(args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "maml_tf.main", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    for line in process.stdout:
        if line.startswith("Done initializing"):
            return process
    raise AssertionError(f"training did not start: {process.stderr.read()}")


def test_cli_a_stopped_test_ends_in_one_line_and_writes_nothing(tmp_path, repo_root):
    """SIGTERM or SIGINT while the 600-task test runs (sent once it printed "Restored", before its
    first call returns): the test stops after that call, says how far it got in one line
    (status 143 / 130) and writes no csv, pkl or json. Before, SIGTERM killed it silently."""
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--metatrain_iterations=2", "--nojit_compile"]
    assert run_main(args, repo_root).returncode == 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for signum, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        process = subprocess.Popen([sys.executable, "-m", "maml_tf.main", *args, "--train=False"], cwd=repo_root,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for line in process.stdout:
            if line.startswith("Restored"):
                process.send_signal(signum)
                break
        out, err = process.communicate(timeout=300)
        assert process.returncode == status, err
        done = err.strip().splitlines()[-1]
        assert done.startswith(f"maml_tf.main: stopped by {signal.Signals(signum).name} after testing ")
        assert done.endswith(" of 600 tasks (nothing written); run the same command to test again")
        assert "Traceback" not in err and "Wrote" not in out
        assert sorted(p.suffix for p in (tmp_path / SINE_RUN).iterdir() if p.suffix in (".csv", ".pkl", ".json")) == [
            ".json"]  # run_info.json only


def test_cli_one_writer_per_run_graceful_stop_and_kill_9(tmp_path, repo_root):
    """A second training on a live run is refused naming the first; SIGTERM stops the first
    with status 143 after saving; a run killed with SIGKILL leaves no lock that blocks; run_info.json
    keeps every start with its speed settings (the last one resumed under XLA with factored dense
    kernels). With --jit_compile unset, the refused second run is refused before any XLA timing.
    A resume asked for fewer iterations than the run has done trains nothing and says where it is."""
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--metatrain_iterations=1000000"]
    first = _start_training(args, repo_root)
    second = run_main(args, repo_root)
    assert second.returncode == 1 and "Timing" not in second.stdout
    assert _last_line(second).startswith(f"maml_tf.main: error: {tmp_path / SINE_RUN} is being written by "
                                         f"process {first.pid} on ")
    args.append("--nojit_compile")
    time.sleep(1)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 143, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("maml_tf.main: stopped by SIGTERM after iteration ") and "run the same command" in line
    saved = int(line.split("after iteration ")[1].split()[0])
    assert os.path.exists(tmp_path / SINE_RUN / f"model-{saved}.index")

    third = _start_training(args, repo_root)
    third.kill()
    third.wait()
    fourth = run_main(args[:2] + [f"--metatrain_iterations={saved + 2}", "--jit_compile", "--dense_method=low_rank"],
                      repo_root)
    assert fourth.returncode == 0, fourth.stderr
    assert f"Resuming {tmp_path / SINE_RUN} from iteration {saved}" in fourth.stdout
    starts = json.loads((tmp_path / SINE_RUN / "run_info.json").read_text())["starts"]
    assert [(s["iteration"], s["jit_compile"], s["dense_method"]) for s in starts] == [
        (0, starts[0]["jit_compile"], "auto"), (saved, False, "auto"), (saved, True, "low_rank")]
    assert isinstance(starts[0]["jit_compile"], bool) and "step_ms_graph_xla" in starts[0]
    fifth = run_main(args[:2] + ["--metatrain_iterations=1"], repo_root)  # asked for less than is done
    assert fifth.returncode == 0, fifth.stderr
    assert f"Nothing to do: the run is at iteration {saved + 2} of 1." in fifth.stdout
    assert fifth.stdout.strip().splitlines()[-1] == f"Finished at iteration {saved + 2}; checkpoints in {tmp_path / SINE_RUN}"


def test_import_original_names_a_damaged_checkpoint(tmp_path, shared_data):
    """The released checkpoint cut short: one line naming it, nothing imported."""
    from maml_tf.original_checkpoint import import_checkpoint

    source = shared_data / "original_checkpoint"
    for name in ("model59000.index", "model59000.data-00000-of-00001"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    _truncate(tmp_path / "model59000.data-00000-of-00001")
    with pytest.raises(ValueError, match=r"^--checkpoint: .*model59000 is damaged or not a TensorFlow checkpoint"):
        import_checkpoint(str(tmp_path / "model59000"), str(tmp_path / "logs"))
    assert not (tmp_path / "logs").exists()


def test_tilde_in_path_flags_is_expanded(tmp_path, repo_root):
    """--logdir=~/x means $HOME/x, not a folder named '~' in the working directory."""
    env_home = tmp_path / "home"
    env_home.mkdir()
    result = subprocess.run([sys.executable, "-m", "maml_tf.main", "--flagfile=flags/sinusoid.flags",
                             "--logdir=~/runs", "--metatrain_iterations=2"], capture_output=True, text=True,
                            cwd=repo_root, env={**os.environ, "HOME": str(env_home), "TF_CPP_MIN_LOG_LEVEL": "3"},
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert (env_home / "runs" / SINE_RUN / "model-2.index").exists()
    assert not (repo_root / "~").exists()


@pytest.mark.parametrize("module", ["maml_tf.main", "maml_tf.import_original", "maml_tf.compare"])
def test_help_exits_zero(repo_root, module):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=repo_root,
                            timeout=300)
    assert result.returncode == 0 and "--" in result.stdout


def test_a_checkpoint_of_another_configuration_is_refused_not_skipped_as_damaged(two_checkpoints):
    """A whole checkpoint that does not fit the model (here the sinusoid oracle's, whose run
    name is the same as MAML's) is CheckpointMismatchError naming it, when testing and
    when resuming; resuming renames nothing and does not fall back to an older checkpoint or
    start afresh (it used to call it damaged, rename it aside and train from the start)."""
    from maml_tf.checkpoints import CheckpointMismatchError
    run_dir = two_checkpoints
    keras.utils.set_random_seed(0)
    oracle = experiment.build_model("sinusoid", oracle=True, norm="None")  # its first kernel is 3 x 40, not 1 x 40
    Checkpointer(str(run_dir), MetaLearner(oracle, experiment.build_loss("sinusoid", 10)[0], update_lr=0.01,
                                           num_inner_steps=1)).save(60)
    before = sorted(os.listdir(run_dir))
    with pytest.raises(CheckpointMismatchError, match=r"model-60 does not fit this run's model .*another --logdir"):
        Checkpointer(str(run_dir), _learner()).restore(-1, required=True)
    with pytest.raises(CheckpointMismatchError, match=r"model-60 does not fit"):
        Checkpointer(str(run_dir), _learner()).restore_for_resume()
    assert sorted(os.listdir(run_dir)) == before


def test_damaged_checkpoints_are_renamed_by_file_name_only_and_never_overwritten(tmp_path):
    """A run directory below a folder whose name looks like a checkpoint (`model-40.x`) still
    renames the damaged files aside (the rename used to edit the first match in the whole path);
    a second damage of model-40 keeps the first one's files (`.damaged2`), and a failed save of
    model-40 would not delete them."""
    run_dir = tmp_path / "model-40.x" / "run"
    learner = _learner()
    _train(learner, Checkpointer(str(run_dir), learner), 40)
    for round_ in (1, 2):
        _truncate(_data_file(run_dir, 40))
        checkpointer = Checkpointer(str(run_dir), _learner())
        assert checkpointer.restore_for_resume(warn=lambda message: None) == 20
        checkpointer.save(40)
    names = sorted(os.listdir(run_dir))
    failing = Checkpointer(str(run_dir), _learner())
    failing.checkpoint.write = lambda path: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(CheckpointWriteError):
        failing.save(40)  # a failed save removes what it wrote of model-40, not the damaged copies
    assert [n for n in sorted(os.listdir(run_dir)) if ".damaged" in n] == [n for n in names if ".damaged" in n]
    assert [n for n in names if ".damaged" in n] == sorted(
        [n.replace("model-40.", "model-40.damaged.") for n in names if n.startswith("model-40.") and ".damaged" not in n]
        + [n.replace("model-40.", "model-40.damaged2.") for n in names if n.startswith("model-40.")
           and ".damaged" not in n])


@pytest.mark.parametrize("flags, message", [
    (["--train_update_batch_size=10"], "--train_update_batch_size / --train_update_lr name the run a test reads"),
    (["--train_update_lr=0.5"], "--train_update_batch_size / --train_update_lr name the run a test reads"),
    (["--seed=-1"], "--seed must be >= 0 and <= 2147483647, got -1"),
    (["--seed=4294967296"], "--seed must be >= 0 and <= 2147483647, got 4294967296"),
])
def test_training_flags_that_would_misname_or_misseed_a_run_are_refused(tmp_path, repo_root, flags, message):
    """--train_update_* while training named the run after a K or alpha it was not trained
    with (a later test then read it as such); a seed TensorFlow cannot take failed after
    TensorFlow loaded, without naming the flag. Both are one line before anything starts."""
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", *flags], repo_root)
    assert result.returncode == 1
    assert _last_line(result).startswith(f"maml_tf.main: error: {message}")
    assert not os.listdir(tmp_path)


def test_a_resume_says_which_settings_it_could_not_check(tmp_path, repo_root):
    """A run_info.json that does not record some training flags (hand-edited, or older), or
    checkpoints without any run_info.json: the resume goes on, saying what it did not check."""
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--metatrain_iterations=5"]
    assert run_main(args, repo_root).returncode == 0
    info_path = tmp_path / SINE_RUN / "run_info.json"
    info = json.loads(info_path.read_text())
    del info["training_flags"]["seed"], info["training_flags"]["meta_lr"]
    info_path.write_text(json.dumps(info))
    result = run_main(args[:2] + ["--metatrain_iterations=6"], repo_root)
    assert result.returncode == 0, result.stderr
    assert "does not record --meta_lr, --seed: resumed without checking them" in result.stderr
    info_path.unlink()
    result = run_main(args[:2] + ["--metatrain_iterations=7"], repo_root)
    assert result.returncode == 0, result.stderr
    assert "has checkpoints but no run_info.json" in result.stderr


def test_a_test_of_another_kind_keeps_the_previous_result(tmp_path, repo_root):
    """Two tests of one run share the original's file name; a test that differs from the one on
    disk (here its number of tasks) first keeps the previous csv/pkl/json in replaced_tests/ and
    says so, then writes its own over them; the same test again replaces its result. A result
    whose .json is damaged or missing (the original's test wrote none) is kept too: what it
    describes is unknown."""
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--metatrain_iterations=5"]
    assert run_main(args, repo_root).returncode == 0
    test = args[:2] + ["--train=False", "--update_batch_size=5", "--train_update_batch_size=10"]
    for tasks in (3, 3, 4):
        result = run_main(test + [f"--num_test_tasks={tasks}"], repo_root)
        assert result.returncode == 0, result.stderr
    run_dir = tmp_path / SINE_RUN
    (kept,) = os.listdir(run_dir / "replaced_tests")  # one replaced test: 3 tasks, not the rerun of 3
    assert "holds another test's result (num_tasks 3 -> 4): kept in" in result.stdout
    old = json.loads((run_dir / "replaced_tests" / kept / "test_ubs5_stepsize0.01.json").read_text())
    new = json.loads((run_dir / "test_ubs5_stepsize0.01.json").read_text())
    assert (old["num_tasks"], new["num_tasks"]) == (3, 4)
    assert sorted(os.listdir(run_dir / "replaced_tests" / kept)) == [
        "test_ubs5_stepsize0.01.csv", "test_ubs5_stepsize0.01.json", "test_ubs5_stepsize0.01.pkl"]
    description = run_dir / "test_ubs5_stepsize0.01.json"
    for damage, said in ((lambda: description.write_text('{"num_tasks": 4'), "damaged"),
                         (description.unlink, "missing")):
        damage()
        before = (run_dir / "test_ubs5_stepsize0.01.csv").read_bytes()
        result = run_main(test + ["--num_test_tasks=4"], repo_root)
        assert result.returncode == 0, result.stderr
        assert f"holds another test's result (its description test_ubs5_stepsize0.01.json is {said}): kept" in result.stdout
        folder = run_dir / "replaced_tests" / result.stdout.split(": kept in ")[1].split()[0].split("/")[-1]
        assert (folder / "test_ubs5_stepsize0.01.csv").read_bytes() == before
    assert len(os.listdir(run_dir / "replaced_tests")) == 3
