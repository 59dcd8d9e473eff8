"""Fault injection for rl.train and rl.evaluate (issue 13): divergence, damaged checkpoints and
config.json, one writer per run directory, storage faults, graceful stop, --help, the rate after
a resume and TensorBoard steps after a resume. Tiny point runs (2 tasks x 2 paths of 10 steps)."""
import csv
import errno
import glob
import logging
import os
import resource
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from report.run_lock import RunLockedError
from report.stop import StopRequested
from rl import run_io
from run_files import trained_weights
from rl.maml import MAMLTRPO
from rl.trainer import Diverged, TrainingStopped, run

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
TINY_FLAGS = ["--meta_batch_size=2", "--fast_batch_size=2", "--max_path_length=10", "--hidden_sizes=8,8", "--seed=3"]


@pytest.fixture
def tiny(small_config):
    return dict(small_config, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8])


def _cli(module, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def _last_line(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    return lines[-1]




def _rows(logdir, drop=("ItrTime", "SampleTime", "EnvStepsPerSec", "Time")):
    with open(os.path.join(logdir, "progress.csv"), newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def _assert_same_run(a, b):
    (wa, ia), (wb, ib) = trained_weights(a), trained_weights(b)
    assert ia == ib
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    assert _rows(a) == _rows(b)


def _ckpt(logdir, n):
    return os.path.join(logdir, "checkpoints", f"ckpt-{n}")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 3-iteration tiny run (the reference of every resume below)."""
    from conftest import SMALL_CONFIG
    logdir = str(tmp_path_factory.mktemp("straight"))
    run(dict(SMALL_CONFIG, meta_batch_size=2, fast_batch_size=2, max_path_length=10, hidden_sizes=[8, 8], n_itr=3),
        logdir)
    return logdir


# 1. Divergence ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module, args, message", [
    ("rl.train", ["--fast_lr=nan"], "--fast_lr must be > 0 and finite (got nan)"),
    ("rl.train", ["--max_kl=inf"], "--max_kl must be > 0 and finite (got inf)"),
    ("rl.train", ["--pretrain_lr=0"], "--pretrain_lr must be > 0"),
    ("rl.train", ["--cg_damping=nan"], "--cg_damping must be >= 0 and finite"),
    ("rl.train", ["--n_itr=-1"], "--n_itr must be >= 0"),
    ("rl.train", ["--seed=-2"], "--seed must be >= 0"),
    ("rl.train", ["--seed=18446744073709551616"], "--seed must be >= 0 and <= 2147483647"),
    ("rl.evaluate", ["--fast_lr=nan"], "--fast_lr must be >= 0 and finite"),
    ("rl.evaluate", ["--later_lr_scale=-1"], "--later_lr_scale must be >= 0"),
    ("rl.evaluate", ["--seed=-1"], "--seed must be >= 0"),
    ("rl.evaluate", ["--task_seed=4294967296"], "--task_seed must be >= 0 and <= 2147483647"),
    ("rl.evaluate", ["--init_seeds=1,2147483648"], "--init_seeds must be >= 0 and <= 2147483647"),
])
def test_numeric_flags_are_validated_before_anything_starts(tmp_path, module, args, message):
    run_args = [f"--logdir={tmp_path}/run"] if module == "rl.train" else [f"--run=m:{tmp_path}/run",
                                                                          f"--output={tmp_path}/out/e.csv"]
    result = _cli(module, *run_args, *args)
    assert result.returncode == 1
    assert _last_line(result.stderr).startswith(f"{module}: error: {message}"), result.stderr
    assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "out")


def test_a_non_finite_weight_stops_training_and_is_never_saved(tmp_path, tiny, monkeypatch):
    """A weight turned NaN in iteration 1: Diverged names the iteration and --fast_lr / --max_kl;
    ckpt-1 (finite) is the last checkpoint, progress.csv ends at iteration 0."""
    real = MAMLTRPO.iteration
    calls = []

    def poisoned(self, rng):
        stats = real(self, rng)
        calls.append(1)
        if len(calls) == 2:
            self.policy.params[0].assign(self.policy.params[0] * np.nan)
        return stats

    monkeypatch.setattr(MAMLTRPO, "iteration", poisoned)
    logdir = str(tmp_path)
    with pytest.raises(Diverged, match=r"^training diverged at iteration 1: non-finite .*--fast_lr=0.5 .*"
                                       r"--max_kl=0.01 .*ckpt-1, holds the policy before it"):
        run(dict(tiny, n_itr=3), logdir)
    assert run_io.checkpoints_on_disk(os.path.join(logdir, "checkpoints")) == [1]
    run_io.verify_checkpoint(_ckpt(logdir, 1))  # finite
    assert [r["Iteration"] for r in _rows(logdir)] == ["0"]


def test_a_diverging_step_size_ends_rl_train_with_one_line(tmp_path):
    result = _cli("rl.train", f"--logdir={tmp_path}", "--mode=pretrain", "--pretrain_lr=1e30", "--n_itr=3",
                  *TINY_FLAGS)
    assert result.returncode == 1
    line = _last_line(result.stderr)
    assert line.startswith("rl.train: error: training diverged at iteration 0: non-finite ") and \
        "--pretrain_lr=1e+30" in line, result.stderr
    assert run_io.checkpoints_on_disk(str(tmp_path / "checkpoints")) == []


def test_a_diverging_adaptation_in_rl_evaluate_is_written_then_reported(tmp_path, tiny):
    """--fast_lr=1e30: the adapted policies' returns are NaN (the baseline fit on their paths is
    skipped, not a LinAlgError traceback); the csv keeps them, then one line names --fast_lr."""
    logdir = str(tmp_path / "random")
    run(dict(tiny, mode="random"), logdir)
    result = _cli("rl.evaluate", f"--run=random:{logdir}", f"--output={tmp_path}/e.csv", "--fast_lr=1e30",
                  "--num_tasks=2", "--num_trajs=2", "--num_steps=2")
    assert result.returncode == 1
    assert _last_line(result.stderr).startswith("rl.evaluate: error: non-finite mean returns (random step 1, "
                                                "random step 2; written to ") and "--fast_lr" in result.stderr
    with open(tmp_path / "e.csv", newline="") as f:
        assert [r["mean_return"] for r in csv.DictReader(f)][1:] == ["nan", "nan"]


# 2. Damaged checkpoints and config.json --------------------------------------------------------

def _truncate(prefix):
    data = glob.glob(prefix + ".data-*")[0]
    with open(data, "rb+") as f:
        f.truncate(os.path.getsize(data) // 2)


def _flip(prefix):
    data = glob.glob(prefix + ".data-*")[0]
    with open(data, "rb+") as f:
        f.seek(os.path.getsize(data) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


def _drop_index(prefix):
    os.remove(prefix + ".index")


def test_damaged_checkpoints_are_named_and_resuming_falls_back_past_them(tmp_path, tiny, straight, caplog):
    """ckpt-4 cut short, ckpt-3 with a flipped byte, ckpt-2 without its index, and no state file:
    each is named as damaged; resuming warns about each, keeps them as ckpt-<N>.damaged.*,
    continues from ckpt-1 and ends bit for bit as the uninterrupted run."""
    logdir = str(tmp_path)
    run(dict(tiny, n_itr=4, keep_checkpoints=4), logdir)
    os.remove(os.path.join(logdir, "checkpoints", "checkpoint"))
    for number, damage, message in ((4, _truncate, r"is damaged: Read less bytes"),
                                    (3, _flip, r"is damaged: .*Checksum does not match"),
                                    (2, _drop_index, r"is damaged: its index file .*ckpt-2\.index is missing")):
        damage(_ckpt(logdir, number))
        with pytest.raises(run_io.DamagedFile, match=rf"ckpt-{number}.*{message}"):
            run_io.verify_checkpoint(_ckpt(logdir, number))
    with pytest.raises(run_io.DamagedFile, match=r"ckpt-4 .* is damaged"):
        run_io.RunState.check_newest(logdir)  # the newest: what rl.evaluate evaluates, never an older one
    before = sorted(os.listdir(os.path.join(logdir, "checkpoints")))
    with caplog.at_level(logging.WARNING):
        run(dict(tiny, n_itr=3, keep_checkpoints=4), logdir)
    for number in (2, 3, 4):
        assert f"ckpt-{number}" in caplog.text and f"kept as ckpt-{number}.damaged.*" in caplog.text
    after = sorted(os.listdir(os.path.join(logdir, "checkpoints")))
    assert sorted(f.replace(".damaged", "") for f in after if ".damaged" in f) == \
        [f for f in before if not f.startswith("ckpt-1.")]
    _assert_same_run(straight, logdir)


def test_rl_evaluate_names_the_damaged_checkpoint_in_one_line(tmp_path, tiny):
    logdir = str(tmp_path / "run")
    run(dict(tiny, n_itr=2), logdir)
    _truncate(_ckpt(logdir, 2))
    result = _cli("rl.evaluate", f"--run=maml:{logdir}", f"--output={tmp_path}/e.csv", "--num_tasks=2")
    assert result.returncode == 1
    line = _last_line(result.stderr)
    assert line.startswith("rl.evaluate: error: --run=maml:") and "ckpt-2" in line and "damaged" in line, line
    assert not os.path.exists(tmp_path / "e.csv")


def test_all_checkpoints_damaged_is_an_error_that_changes_nothing(tmp_path, tiny):
    logdir = str(tmp_path)
    run(dict(tiny, n_itr=1), logdir)
    _flip(_ckpt(logdir, 1))
    before = sorted(os.listdir(os.path.join(logdir, "checkpoints")))
    with pytest.raises(run_io.DamagedFile, match=r"no intact checkpoint .*ckpt-1"):
        run(dict(tiny, n_itr=2), logdir)
    assert sorted(os.listdir(os.path.join(logdir, "checkpoints"))) == before


@pytest.mark.parametrize("content", ['{"env": "point", "mo', "\xff\xfe garbage", '{"env": "point"}'])
def test_a_damaged_config_json_is_named(tmp_path, tiny, content):
    logdir = str(tmp_path / "run")
    run(dict(tiny, n_itr=1), logdir)
    with open(os.path.join(logdir, "config.json"), "w", encoding="latin-1") as f:
        f.write(content)
    with pytest.raises(run_io.DamagedFile, match=r"config\.json is damaged"):
        run(dict(tiny, n_itr=2), logdir)
    if content.startswith("{\"env\": \"point\"}"):
        result = _cli("rl.evaluate", f"--run=maml:{logdir}", f"--output={tmp_path}/e.csv")
        assert result.returncode == 1
        assert "config.json is damaged (missing " in _last_line(result.stderr)


# 3. One writer per run directory, 5. graceful stop (real processes) -----------------------------

def _start_training(logdir, *args):
    proc = subprocess.Popen([sys.executable, "-m", "rl.train", f"--logdir={logdir}", "--n_itr=100000",
                             *TINY_FLAGS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(logdir, "checkpoints", "checkpoint")):  # in the training loop
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    return proc


def test_a_second_writer_is_refused_and_sigterm_saves_and_exits_143(tmp_path, tiny):
    logdir = str(tmp_path)
    first = _start_training(logdir)
    try:
        second = _cli("rl.train", f"--logdir={logdir}", "--n_itr=100000", *TINY_FLAGS)
        assert second.returncode == 1
        assert _last_line(second.stderr).startswith(f"rl.train: error: {logdir} is being written by process "
                                                     f"{first.pid} on "), second.stderr
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 143
    line = _last_line(stderr)
    assert line.startswith("rl.train: stopped by SIGTERM after ") and "run the same command to resume" in line
    weights, iteration = trained_weights(logdir)
    assert iteration == len(_rows(logdir)) >= 1  # the checkpoint of the last iteration run, its row
    assert not glob.glob(os.path.join(logdir, "**", "*_temp"), recursive=True)


def test_the_lock_of_a_killed_run_does_not_block_its_resume(tmp_path):
    logdir = str(tmp_path)
    killed = _start_training(logdir)
    killed.kill()
    killed.communicate()
    done = trained_weights(logdir)[1]
    run(dict(run_io.read_config(logdir), n_itr=done + 1), logdir)  # no RunLockedError
    assert trained_weights(logdir)[1] == done + 1
    with open(os.path.join(logdir, ".lock")) as f:
        assert f.read().startswith(f"process {os.getpid()} ")


def test_a_live_writer_in_this_process_is_refused(tmp_path, tiny):
    from report.run_lock import RunLock
    with RunLock(str(tmp_path)):
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            run(dict(tiny, n_itr=1), str(tmp_path))


def test_sampler_workers_ended_by_the_stop_signal_stop_the_run_at_its_last_checkpoint(tmp_path, tiny, monkeypatch):
    """A SIGTERM sent to the whole process group (scancel, `kill -- -PGID`) also ends the
    `--sampler_workers` processes mid-iteration: the run stops like any stopped run (exit 143,
    one line, resumable from the last checkpoint), where a pipe's EOFError ended it in a
    traceback, also when they end while the iteration's checkpoint is being saved and when the
    signal reaches this process after them. A worker lost without a stop signal is not taken
    for a stop: SamplerWorkerLost goes on to rl.train, an OSError (which rl.train reports in one
    line, as its other OSErrors)."""
    from rl.envs.parallel import SamplerWorkerLost

    lost = SamplerWorkerLost("sampler worker 1 (process 7) ended unexpectedly (exit code -15); rerun the command")
    real = MAMLTRPO.iteration
    calls = []

    def group_terminated(self, rng):
        calls.append(1)
        if len(calls) == 2:  # during the second iteration
            os.kill(os.getpid(), signal.SIGTERM)
            raise lost
        return real(self, rng)

    logdir = str(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(MAMLTRPO, "iteration", group_terminated)
        with pytest.raises(TrainingStopped) as info:
            run(dict(tiny, n_itr=3), logdir)
    assert info.value.exit_status == 143
    assert info.value.message.startswith("stopped by SIGTERM after iteration 1 (1 run by this start): ")
    assert trained_weights(logdir)[1] == 1
    with monkeypatch.context() as m:
        m.setattr(MAMLTRPO, "iteration", lambda self, rng: (_ for _ in ()).throw(lost))
        with pytest.raises(SamplerWorkerLost):
            run(dict(tiny, n_itr=3), logdir)
    assert isinstance(lost, OSError)
    # Ended while the iteration's checkpoint is saved (its start-noise states are read from the
    # workers), and by a SIGTERM that reaches this process after the workers' (a scheduler
    # signalling them first): the run waits for it, then stops as stopped runs do.
    import threading

    from rl.run_io import RunState
    real_save = RunState.save

    def save_after_workers_ended(self, iteration, rng=None, env=None):
        if iteration == 3:
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
            raise SamplerWorkerLost("sampler worker 0 (process 7) ended unexpectedly (exit code -15)", -15)
        return real_save(self, iteration, rng, env=env)

    with monkeypatch.context() as m:
        m.setattr(RunState, "save", save_after_workers_ended)
        with pytest.raises(TrainingStopped) as info:
            run(dict(tiny, n_itr=4), logdir)
    assert info.value.message.startswith("stopped by SIGTERM after iteration 2 (1 run by this start): ")
    assert trained_weights(logdir)[1] == 2


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stopped_run_resumes_bit_for_bit(tmp_path, tiny, straight, monkeypatch, caplog, signum, status):
    """The signal arrives during iteration 0: the run saves ckpt-1 and stops (exit status 130 /
    143); the same command then ends bit for bit as the uninterrupted run, and the rate and ETA
    it prints come from the iterations it ran (no 0 steps/s, ETA of the one iteration left)."""
    real = MAMLTRPO.iteration

    def signalled(self, rng):
        os.kill(os.getpid(), signum)
        return real(self, rng)

    logdir = str(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(MAMLTRPO, "iteration", signalled)
        with pytest.raises(TrainingStopped) as info:
            run(dict(tiny, n_itr=3), logdir)
    assert isinstance(info.value, StopRequested) and info.value.exit_status == status
    assert info.value.message.startswith(f"stopped by {signal.Signals(signum).name} after iteration 1 (1 run by this start): ")
    assert trained_weights(logdir)[1] == 1
    # absl's own logger: a test of another module may have left absl at WARNING in this process.
    with caplog.at_level(logging.INFO, logger="absl"):
        run(dict(tiny, n_itr=3), logdir)
    _assert_same_run(straight, logdir)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("itr 2/3"))
    rate = float(line.split(" steps/s")[0].rsplit("| ", 1)[1])
    seconds_per_itr = float(line.split(" s/itr")[0].rsplit("| ", 1)[1])
    hours, rest = line.split("ETA ")[1].split("h")
    assert rate > 0 and int(hours) == 0
    assert int(rest[:2]) * 60 + int(rest[3:5]) <= seconds_per_itr + 1  # one iteration left


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_during_rl_evaluate_is_one_line(tmp_path, tiny, signum, status):
    """SIGINT (Ctrl-C) or SIGTERM (what `kill` and job schedulers send) while evaluating: exit
    130 / 143, one line naming the signal, no csv (SIGTERM ended it silently before
    report.stop.interrupt_where_it_is). (400 tasks and 40 steps, about 30 s
    uninterrupted: in the full suite, with 40 tasks and 3 steps and then 400 tasks, the
    evaluation twice ended before this test read the start line and signalled; a long pause of
    the large pytest process is the likely cause.)"""
    logdir = str(tmp_path / "random")
    run(dict(tiny, mode="random"), logdir)
    args = ["rl.evaluate", f"--run=random:{logdir}", f"--output={tmp_path}/e.csv", "--num_tasks=400",
            "--num_steps=40"]
    # Started as a shell would start it: both signals at their defaults, unblocked (in the full
    # suite the child once evaluated to the end despite SIGINT, as if it had inherited it ignored).
    start = ("import runpy, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM}); "
             "signal.signal(signal.SIGINT, signal.default_int_handler); signal.signal(signal.SIGTERM, signal.SIG_DFL); "
             "sys.argv = sys.argv[1:]; "
             "runpy.run_module('rl.evaluate', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", start, *args], stderr=subprocess.PIPE, text=True, env=ENV)
    lines = []
    for line in proc.stderr:  # wait until the evaluation runs
        lines.append(line)
        if "Evaluating random" in line:
            break
    proc.send_signal(signum)
    lines += proc.stderr.readlines()
    proc.wait(timeout=60)
    stderr = "".join(lines)
    assert proc.returncode == status, stderr
    assert _last_line(stderr) == f"rl.evaluate: interrupted ({signum.name}); no csv written"
    assert not os.path.exists(tmp_path / "e.csv")


# 4. Storage ------------------------------------------------------------------------------------

def test_an_unwritable_logdir_is_refused_before_anything_starts(tmp_path, tiny):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match=r"^--logdir .*file/run is not writable"):
        run(dict(tiny, n_itr=1), str(tmp_path / "file" / "run"))


@pytest.mark.parametrize("output, message", [
    ("dir", "is a directory; give the csv file to write"),
    ("file/e.csv", "--output folder .*file is not writable"),
])
def test_an_unusable_output_is_refused_before_the_evaluation(tmp_path, output, message):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    result = _cli("rl.evaluate", f"--run=maml:{tmp_path}/no_run", f"--output={tmp_path}/{output}")
    assert result.returncode == 1
    import re
    assert re.search(message, _last_line(result.stderr)), result.stderr


def test_a_full_disk_while_saving_a_checkpoint(tmp_path, tiny, monkeypatch):
    """Files may not grow past 32 kB (RLIMIT_FSIZE: the write fails with EFBIG as on a full disk)
    while the second checkpoint (~130 kB) is saved: one-line StorageError, ckpt-1 intact, no
    temporary files; the same command then finishes the run."""
    logdir = str(tmp_path)
    big = dict(tiny, hidden_sizes=[100, 100])
    real_save = run_io.RunState.save

    def save_on_a_full_disk(self, iteration, *args, **kwargs):
        if iteration < 2:
            return real_save(self, iteration, *args, **kwargs)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (32_000, hard))
        try:
            return real_save(self, iteration, *args, **kwargs)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)

    with monkeypatch.context() as m:
        m.setattr(run_io.RunState, "save", save_on_a_full_disk)
        with pytest.raises(run_io.StorageError, match=r"^could not save checkpoint .*ckpt-2: File too large; "
                                                      r"the previous checkpoint .*ckpt-1 is intact$"):
            run(dict(big, n_itr=2), logdir)
    names = sorted(os.listdir(os.path.join(logdir, "checkpoints")))
    assert names == ["checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index"], names
    run_io.verify_checkpoint(_ckpt(logdir, 1))
    assert not [n for n in os.listdir(logdir) if ".tmp" in n]
    run(dict(big, n_itr=2), logdir)
    assert trained_weights(logdir)[1] == 2


def test_a_failed_progress_write_keeps_the_file_and_leaves_no_temporary(tmp_path, tiny, monkeypatch):
    """The disk is full (ENOSPC) when iteration 1's row is written: one-line StorageError,
    progress.csv keeps iteration 0's row whole, ckpt-1 is the last checkpoint, no temporary file."""
    import contextlib
    logdir = str(tmp_path)
    real_open = run_io.atomic_open
    calls = []

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    @contextlib.contextmanager
    def full_disk_on_second_write(path, *args, **kwargs):
        calls.append(path)
        with real_open(path, *args, **kwargs) as f:
            yield f if len(calls) == 1 else Full()

    monkeypatch.setattr(run_io, "atomic_open", full_disk_on_second_write)
    with pytest.raises(run_io.StorageError, match=r"^could not write .*progress\.csv: No space left on device"):
        run(dict(tiny, n_itr=2), logdir)
    assert [r["Iteration"] for r in _rows(logdir)] == ["0"]
    assert not [n for n in os.listdir(logdir) if ".tmp" in n]
    assert trained_weights(logdir)[1] == 1


def test_without_state_file_and_with_leftovers_of_a_killed_run(tmp_path, tiny, straight, dead_pid):
    """A copied run without the TF `checkpoint` file, with what a killed save and killed atomic
    writes leave: ckpt-2 is found (not overwritten by a new start), the leftovers are removed,
    and the run ends bit for bit as the uninterrupted one."""
    logdir = str(tmp_path)
    run(dict(tiny, n_itr=2), logdir)
    os.remove(os.path.join(logdir, "checkpoints", "checkpoint"))
    assert trained_weights(logdir)[1] == 2  # found on disk for evaluation too
    os.makedirs(os.path.join(logdir, "checkpoints", "ckpt-3_temp"))
    (tmp_path / "checkpoints" / "ckpt-3_temp" / "part-00000-of-00001.index").write_text("x")
    (tmp_path / "checkpoints" / "checkpoint.tmp0a1b2c").write_text("x")
    (tmp_path / f"progress.csv.tmp{dead_pid}").write_text("x")
    (tmp_path / f"config.json.tmp{dead_pid}").write_text("x")
    run(dict(tiny, n_itr=3), logdir)
    leftovers = [n for n in os.listdir(logdir) + os.listdir(tmp_path / "checkpoints") if "tmp" in n or "_temp" in n]
    assert leftovers == []
    _assert_same_run(straight, logdir)


# 6. Small things -------------------------------------------------------------------------------

@pytest.mark.parametrize("module", ["rl.train", "rl.evaluate"])
def test_help_exits_0(module):
    result = _cli(module, "--help")
    assert result.returncode == 0, result.stderr
    assert "--output" in result.stdout if module == "rl.evaluate" else "--logdir" in result.stdout


def test_tensorboard_shows_each_step_once_after_a_resume(tmp_path, tiny):
    """Killed after logging iteration 1 but before its checkpoint (simulated: ckpt-2 removed):
    the resumed session starts with SessionLog START at step 1, so TensorBoard keeps steps 0..1
    once each, step 1 from the resumed session."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logdir = str(tmp_path)
    run(dict(tiny, n_itr=2), logdir)
    for f in glob.glob(_ckpt(logdir, 2) + ".*"):
        os.remove(f)
    time.sleep(1.1)  # event files sort by the second they were created in
    run(dict(tiny, n_itr=2), logdir)
    files = sorted(glob.glob(os.path.join(logdir, "tb", "events.out.tfevents.*")))
    assert len(files) == 2
    starts = [e.step for e in tf.compat.v1.train.summary_iterator(files[1]) if e.HasField("session_log")]
    assert starts == [1]
    accumulator = EventAccumulator(os.path.join(logdir, "tb"))
    accumulator.Reload()
    steps = [e.step for e in accumulator.Scalars("0AverageReturn")]
    assert steps == [0, 1]
    last = accumulator.Scalars("0AverageReturn")[-1].value
    assert np.isclose(last, float(_rows(logdir)[1]["0AverageReturn"]))


# 7. What a run directory holds ------------------------------------------------------------------

def test_a_checkpoint_without_the_policy_is_refused_not_evaluated_as_random_weights(tmp_path, tiny):
    """A checkpoint holding other objects than rl.train's policy and iteration (here a model
    saved under another name) used to restore nothing and leave the fresh random weights, which
    rl.evaluate then evaluated and rl.train resumed from: both now stop with one line naming it."""
    import tensorflow as tf
    from rl.policy import Policy
    logdir = str(tmp_path / "run")
    run(dict(tiny, n_itr=1), logdir)
    stranger = Policy(2, 2, [8, 8], "relu", seed=5)
    tf.train.Checkpoint(model=stranger.model, iteration=tf.Variable(7, dtype=tf.int64)).write(_ckpt(logdir, 7))
    result = _cli("rl.evaluate", f"--run=maml:{logdir}", f"--output={tmp_path}/e.csv", "--num_tasks=2")
    assert result.returncode == 1
    line = _last_line(result.stderr)
    assert "ckpt-7 does not hold this run's policy and iteration" in line, line
    assert not os.path.exists(tmp_path / "e.csv")
    with pytest.raises(run_io.DamagedFile, match="ckpt-7 does not hold this run's policy"):
        run(dict(tiny, n_itr=9), logdir)


def test_rl_evaluate_names_the_checkpoint_it_evaluated_and_says_partway(tmp_path, tiny):
    """The summary csv's `checkpoint` column and the log name the evaluated checkpoint; one
    before the run's --n_itr is called partway in the log; report.compare's table names it beside
    the checkpoint the paper evaluated (2D navigation: after 100 updates). The `training` column names the settings that differ from the paper's command for the task
    (flags/rl_point.flags), and the table says so too."""
    logdir = str(tmp_path / "run")
    run(dict(tiny, n_itr=2), logdir)
    with open(os.path.join(logdir, "config.json")) as f:
        record = __import__("json").load(f)
    record["n_itr"] = 5  # as if stopped after 2 of 5 iterations
    with open(os.path.join(logdir, "config.json"), "w") as f:
        __import__("json").dump(record, f)
    result = _cli("rl.evaluate", f"--run=maml:{logdir}", f"--output={tmp_path}/e.csv", "--num_tasks=2",
                  "--num_trajs=2", "--num_steps=1")
    assert result.returncode == 0, result.stderr
    assert f"Evaluating maml ({logdir}) ckpt-2 (partway: the run was set to 5 iterations) on 2 tasks" in result.stderr
    with open(tmp_path / "e.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["checkpoint"] for r in rows} == {"ckpt-2 of 5"}
    assert {r["training"] for r in rows} == {
        "meta_batch_size=2 (the paper's 20);fast_batch_size=2 (the paper's 20);max_path_length=10 (the paper's 100);"
        "hidden_sizes=8,8 (the paper's 100,100);batch_in_steps=False (the paper's True)"}
    from report.rl_results import read_rl, rl_table
    assert ("[ckpt-2 of 5; the paper evaluated params.pkl, taken as its run's last, 100 updates] [trained otherwise than flags/rl_point.flags: meta_batch_size=2 (the paper's "
            "20), fast_batch_size=2 (the paper's 20), max_path_length=10 (the paper's 100), hidden_sizes=8,8 (the "
            "paper's 100,100), batch_in_steps=False (the paper's True)] |") in rl_table(read_rl(str(tmp_path / "e.csv")))


@pytest.mark.parametrize("change, message", [
    (lambda text: text[:text.rstrip("\n").rindex("\n") + 12] + "\n", "fewer fields than the header"),  # last row cut
    (lambda text: text.replace("\n", ",7\n", 2).replace(",7\n", "\n", 1), "more fields than the header"),
    (lambda text: "\n".join(line for i, line in enumerate(text.split("\n")) if i != 2), "not iterations ..2 once"),
])
def test_a_damaged_progress_csv_is_named_on_resume(tmp_path, tiny, change, message):
    """Resuming keeps progress.csv's rows before the resumed iteration only if they are whole and
    are iterations 0..start-1 in order: a row cut short, one with an extra field, or a missing
    row is DamagedFile naming the file (not a csv silently mixed with blanks or a gap)."""
    logdir = str(tmp_path)
    run(dict(tiny, n_itr=3), logdir)
    path = os.path.join(logdir, "progress.csv")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(change(text))
    with pytest.raises(run_io.DamagedFile, match=rf"progress\.csv.* is damaged \(.*{message}"):
        run(dict(tiny, n_itr=4), logdir)


def test_resuming_says_what_it_changes_and_when_there_is_nothing_to_train(tmp_path, tiny, caplog):
    """A resume with another --n_itr or --keep_checkpoints (allowed) says so; one whose run is
    already past --n_itr says there is nothing to train; a missing progress.csv is said too."""
    logdir = str(tmp_path)
    run(dict(tiny, n_itr=2), logdir)
    os.remove(os.path.join(logdir, "progress.csv"))
    with caplog.at_level(logging.INFO):
        run(dict(tiny, n_itr=3, keep_checkpoints=5), logdir)
    assert "at iteration 2 with --n_itr: 2 -> 3, --keep_checkpoints: 3 -> 5 (recorded in config.json)" in caplog.text
    assert "progress.csv not found: a new one starts at iteration 2" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run(dict(tiny, n_itr=1, keep_checkpoints=5), logdir)
    assert "is already at iteration 3, --n_itr=1: nothing to train" in caplog.text
    assert "Done:" not in caplog.text


def test_a_folder_of_other_files_is_refused_as_logdir(tmp_path, tiny):
    """--logdir pointing at a folder that holds other files and no config.json (a typo, another
    program's run) is refused before anything is written or removed there."""
    (tmp_path / "run_info.json").write_text("{}")
    with pytest.raises(run_io.RunError, match=r"holds run_info\.json and no config\.json: not an rl\.train run"):
        run(dict(tiny, n_itr=1), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["run_info.json"]
    os.remove(tmp_path / "run_info.json")  # a user's file named like a temporary: not ours to remove
    (tmp_path / "notes.txt.tmp123").write_text("mine")
    with pytest.raises(run_io.RunError, match=r"holds notes\.txt\.tmp123 and no config\.json"):
        run(dict(tiny, n_itr=1), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["notes.txt.tmp123"]
    # What a start killed before writing config.json leaves is ours: the run starts.
    empty = tmp_path / "killed"
    empty.mkdir()
    for name in ("config.json.tmp42", ".write_test42", ".lock"):
        (empty / name).write_text("")
    run(dict(tiny, n_itr=1), str(empty))
    assert trained_weights(str(empty))[1] == 1


def test_a_config_json_with_a_bad_value_is_named_in_one_line(tmp_path, tiny):
    """config.json's values are checked as rl.train checks its flags: a bad one is DamagedFile
    naming the file, in rl.evaluate before any evaluation (not a traceback from building the policy)."""
    import json
    logdir = str(tmp_path / "run")
    run(dict(tiny, n_itr=1), logdir)
    path = os.path.join(logdir, "config.json")
    with open(path) as f:
        record = json.load(f)
    with open(path, "w") as f:
        json.dump(dict(record, hidden_activation="relx"), f)
    result = _cli("rl.evaluate", f"--run=maml:{logdir}", f"--output={tmp_path}/e.csv")
    assert result.returncode == 1
    assert "config.json is damaged (hidden_activation must be relu or tanh (got 'relx'))" in _last_line(result.stderr)
    with open(path, "w") as f:
        json.dump(dict(record, fast_lr="fast"), f)
    with pytest.raises(run_io.DamagedFile, match=r"config\.json is damaged \(a value of the wrong type"):
        run_io.read_config(logdir)


def test_an_output_name_too_long_is_refused_before_the_evaluation(tmp_path, tiny):
    """The csv files are probed before the evaluation: a --output whose per-task file's name is
    too long for the file system stops at once, with nothing written (the summary alone used to
    be written after the whole evaluation, then the per-task file failed)."""
    logdir = str(tmp_path / "run")
    run(dict(tiny, n_itr=1), logdir)
    stem = "e" * 240  # e...e.csv fits in 255 bytes, e...e_per_task.csv.tmp<pid> does not
    result = _cli("rl.evaluate", f"--run=maml:{logdir}", f"--output={tmp_path}/{stem}.csv")
    assert result.returncode == 1
    line = _last_line(result.stderr)
    assert "--output:" in line and "_per_task.csv cannot be written: File name too long" in line, line
    assert "Evaluating" not in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["run"]
