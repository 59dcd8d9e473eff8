"""report.run_lock, report.stop and the storage checks of report.files: the pieces every entry
point uses to keep one writer per run, stop between iterations and fail before long work."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from report.files import check_writable, read_json_object, remove_temporary_files
from report.run_lock import RunLock, RunLockedError
from report.stop import GracefulStop, Interrupted, StopRequested, interrupt_where_it_is


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    """flock is per open file description: a second RunLock, even in this process, conflicts."""
    with RunLock(str(tmp_path)):
        with pytest.raises(RunLockedError, match=rf"process {os.getpid()} on "):
            with RunLock(str(tmp_path)):
                pass
    with RunLock(str(tmp_path)):  # released at the end of the block
        pass


def test_a_lock_of_a_killed_process_does_not_block(tmp_path):
    """The kernel drops the lock of a SIGKILLed holder; its stale text stays and is replaced."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from report.run_lock import RunLock
        with RunLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=f"process {holder.pid}"):
        with RunLock(str(tmp_path)):
            pass
    holder.kill()
    holder.wait()
    with RunLock(str(tmp_path)):
        assert (tmp_path / ".lock").read_text().startswith(f"process {os.getpid()} ")


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_graceful_stop_turns_a_signal_into_a_check_at_a_safe_point(signum, status):
    """Inside the block a signal is recorded, not acted on, until `check()` raises StopRequested
    with the shell's status (128 + signal number); on leaving, the handler that was installed
    before is back (compared by equality: each `stop._record` read is a new bound method)."""
    before = signal.getsignal(signum)
    with GracefulStop() as stop:
        assert signal.getsignal(signum) == stop._record
        stop.check()  # nothing yet
        os.kill(os.getpid(), signum)
        with pytest.raises(StopRequested) as info:
            stop.check()
    assert info.value.exit_status == status
    assert signal.getsignal(signum) == before  # handlers restored


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_where_it_is_raises_at_once_and_ignores_a_second_signal(signum, status):
    """For programs with nothing to save (rl.evaluate, the data prep): the signal raises
    Interrupted where the program is (SIGTERM's default would end it without a word), which
    `except Exception` does not catch; a second signal during the cleanup is ignored; the
    previous handlers are back afterwards."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    cleaned = False
    with pytest.raises(Interrupted) as info:
        with interrupt_where_it_is():
            try:
                try:
                    os.kill(os.getpid(), signum)  # (the handler runs as os.kill returns)
                    pytest.fail("the signal did not interrupt")
                except Exception:
                    pytest.fail("Interrupted must not be an Exception")
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second signal while cleaning up: ignored
                cleaned = True
    assert cleaned and info.value.signum == signum and info.value.exit_status == status
    assert {s: signal.getsignal(s) for s in before} == before


def test_interrupt_where_it_is_reclaims_a_taken_signal_and_overrides_an_inherited_ignore():
    """The yielded function installs the handler again after a library replaced it (TensorFlow's
    multi-worker strategy does, for SIGTERM). A signal inherited as ignored is handled too, as
    GracefulStop does (a test suite started in the background, `cmd &`, has SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt_where_it_is() as reclaim:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)  # taken over
            reclaim()
            for signum in (signal.SIGTERM, signal.SIGINT):
                with pytest.raises(Interrupted):
                    try:
                        os.kill(os.getpid(), signum)
                    finally:
                        reclaim()  # (the first signal left both ignored)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # restored
    finally:
        signal.signal(signal.SIGINT, previous)


def test_check_writable_names_the_directory(tmp_path):
    check_writable(str(tmp_path / "new" / "dir"), "--logdir")
    assert (tmp_path / "new" / "dir").is_dir() and not os.listdir(tmp_path / "new" / "dir")
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(OSError, match=r"^--output folder .*file/sub is not writable"):
        check_writable(str(blocked / "sub"), "--output folder")


def test_check_writable_leaves_no_probe_on_a_full_disk(tmp_path, monkeypatch):
    """The probe file is created but cannot be written (a full disk): the error names the
    directory, and the probe is removed (no `.write_test<pid>` left in a run directory)."""
    import builtins

    real_open = builtins.open

    class FullDisk:
        def __init__(self, file):
            self.file = file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, text):
            raise OSError(28, "No space left on device")

    def open_on_a_full_disk(file, *args, **kwargs):
        handle = real_open(file, *args, **kwargs)
        return FullDisk(handle) if ".write_test" in str(file) else handle

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    with pytest.raises(OSError, match=r"^--logdir .* is not writable: No space left on device$"):
        check_writable(str(tmp_path), "--logdir")
    monkeypatch.setattr(builtins, "open", real_open)
    assert os.listdir(tmp_path) == []


def test_remove_temporary_files_removes_only_interrupted_atomic_writes(tmp_path, dead_pid):
    """Only `<name>.tmp<pid>` files of the names given (a pattern here) whose process has ended:
    not a live writer's (another running process's: a test being written beside a training),
    not a folder, not a user's file of another name. A leftover named with this process's own
    pid is a killed process's (the pid reused; in a container, pid 1 every time): removed."""
    names = [f"a.csv.tmp{dead_pid}", f"b.json.tmp{dead_pid}", "keep.tmp", "keep.csv", f"notes.tmp{dead_pid}",
             f"a.csv.tmp{os.getppid()}"]
    (tmp_path / f"b.json.tmp{os.getpid()}").write_text("x")
    for name in names:
        (tmp_path / name).write_text("x")
    (tmp_path / f"c.csv.tmp{dead_pid}").mkdir()
    assert sorted(remove_temporary_files(str(tmp_path), of=r"a\.csv|b\.json|c\.csv")) == sorted([
        f"a.csv.tmp{dead_pid}", f"b.json.tmp{dead_pid}", f"b.json.tmp{os.getpid()}"])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:] + [f"c.csv.tmp{dead_pid}"])


def test_remove_temporary_files_of_named_files_keeps_the_others(tmp_path, dead_pid):
    """With a list `of`, only the named files' temporaries go (rl.evaluate clears its own
    --output's, not those of another process writing beside it)."""
    for name in ("eval.csv", "eval_per_task.csv", "other.csv", "xeval.csv"):
        (tmp_path / f"{name}.tmp{dead_pid}").write_text("x")
    removed = remove_temporary_files(str(tmp_path), of=["eval.csv", "eval_per_task.csv"])
    assert sorted(removed) == [f"eval.csv.tmp{dead_pid}", f"eval_per_task.csv.tmp{dead_pid}"]
    assert sorted(os.listdir(tmp_path)) == [f"other.csv.tmp{dead_pid}", f"xeval.csv.tmp{dead_pid}"]


@pytest.mark.parametrize("content,why", [
    (b'{"a": 1', r"Expecting ',' delimiter"),
    (b'{"a": "\xff"}', r"'utf-8' codec can't decode"),
    (b"[1, 2]", r"it holds a JSON list, not an object"),
    (b"", r"Expecting value"),
])
def test_read_json_object_calls_a_cut_or_foreign_file_damaged(tmp_path, content, why):
    """The one reader of the JSON records the entry points leave (run_info.json, config.json, a
    test's description): anything but a JSON object is one ValueError naming the file, why, and
    the caller's remedy; a whole object is returned as it is."""
    path = tmp_path / "record.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{path} is damaged \({why}.*\); do this$"):
        read_json_object(str(path), "do this")
    path.write_text('{"a": [1, 2]}')
    assert read_json_object(str(path), "do this") == {"a": [1, 2]}
    with pytest.raises(FileNotFoundError):
        read_json_object(str(tmp_path / "missing.json"), "do this")


def test_a_file_system_without_locks_is_one_line_naming_the_lock(tmp_path, monkeypatch):
    """flock failing with other than "held by another" (NFS without lockd: ENOLCK) is one line
    naming the lock file, and the file descriptor is closed; a holder's text spanning lines is
    named by its first."""
    import errno
    import fcntl

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(OSError, match=rf"^cannot lock {tmp_path}/\.lock \(one writer per run directory\): No locks "
                                      r"available$"):
        RunLock(str(tmp_path)).__enter__()
    assert len(os.listdir("/proc/self/fd")) == before
    monkeypatch.undo()
    (tmp_path / ".lock").write_text("process 1 on a\nsecond line")
    with RunLock(str(tmp_path)):
        with open(tmp_path / ".lock") as f:
            assert f.read().count("\n") == 1
        (tmp_path / ".lock").write_text("process 1 on a\nsecond line")
        with pytest.raises(RunLockedError, match=r"is being written by process 1 on a; wait"):
            RunLock(str(tmp_path)).__enter__()


def test_atomic_writes_refuse_what_they_cannot_do_whole(tmp_path):
    """`atomic_open` with mode "x" is refused (its rename would replace an existing file);
    `atomic_write_all` with a folder among its paths writes nothing (a rename onto the folder
    failed after the files before it were replaced: old and new mixed), and
    `check_files_writable` names such a path before the work."""
    from report.files import atomic_open, atomic_write_all, check_files_writable

    with pytest.raises(ValueError, match="mode must contain 'w'"):
        with atomic_open(str(tmp_path / "a"), "x"):
            pass
    (tmp_path / "a.csv").write_text("old a")
    (tmp_path / "b.csv").mkdir()
    with pytest.raises(OSError, match=r"b\.csv could not be written: it is a directory"):
        atomic_write_all({str(tmp_path / "a.csv"): b"new a", str(tmp_path / "b.csv"): b"new b"})
    assert (tmp_path / "a.csv").read_text() == "old a" and sorted(os.listdir(tmp_path)) == ["a.csv", "b.csv"]
    with pytest.raises(OSError, match=r"--output: .*b\.csv cannot be written: it is a directory"):
        check_files_writable([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], "--output:")
