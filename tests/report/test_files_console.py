"""report.files and report.console: the shared output helpers both packages use."""
import os

import pytest

from report.console import exit_with_error, format_duration
from report.files import atomic_open, atomic_write_all, atomic_write_text


def test_atomic_open_replaces_the_file_only_when_the_block_completes(tmp_path):
    """A failure inside the block leaves the old content and no temporary file behind."""
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_open(path, "w") as f:
            f.write("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.txt"]
    with atomic_open(path, "wb") as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_write_all_renames_nothing_until_every_file_is_written(tmp_path, monkeypatch):
    """A test's csv, pkl and json are one result: a write failing on the last one (a full disk)
    leaves all three old files, no temporary file, and an OSError naming the file; a complete
    write replaces all three."""
    import builtins

    paths = [tmp_path / name for name in ("r.pkl", "r.csv", "r.json")]
    atomic_write_all({path: b"old" for path in paths})
    real_open = builtins.open

    def full_disk_on_json(file, *args, **kwargs):
        if str(file).startswith(str(paths[2]) + ".tmp"):
            raise OSError(28, "No space left on device")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk_on_json)
    with pytest.raises(OSError, match=f"^{paths[2]} could not be written: No space left on device$"):
        atomic_write_all({path: b"new" for path in paths})
    monkeypatch.setattr(builtins, "open", real_open)
    assert [p.read_bytes() for p in paths] == [b"old"] * 3
    assert sorted(os.listdir(tmp_path)) == ["r.csv", "r.json", "r.pkl"]
    atomic_write_all({path: b"new" for path in paths})
    assert [p.read_bytes() for p in paths] == [b"new"] * 3


def test_atomic_open_refuses_a_reading_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(tmp_path / "x", "r"):
            pass


def test_format_duration_counts_hours_minutes_seconds():
    assert format_duration(3723.9) == "1h02m03s"
    assert format_duration(59) == "0h00m59s"
    assert format_duration(-5) == "0h00m00s"


def test_exit_with_error_is_one_line_naming_the_program():
    with pytest.raises(SystemExit) as exit_info:
        exit_with_error("rl.train", "--n_itr must be >= 1")
    assert exit_info.value.code == "rl.train: error: --n_itr must be >= 1"


def test_progress_line_prints_at_most_every_interval_and_at_the_end():
    """A line when `every_seconds` passed since the last one (rate = done / elapsed, ETA =
    remaining / rate) and always at the end (no ETA); nothing in between."""
    from report.console import ProgressLine

    now = [0.0]
    lines = []
    progress = ProgressLine(600, "Tested tasks", print_fn=lines.append, every_seconds=30, clock=lambda: now[0])
    for done, t in [(10, 10.0), (40, 29.9), (60, 30.0), (100, 50.0), (600, 300.0)]:
        now[0] = t
        progress.update(done)
    assert lines == ["Tested tasks 60/600 (2.0/s, ETA 0h04m30s)", "Tested tasks 600/600 (2.0/s)"]
