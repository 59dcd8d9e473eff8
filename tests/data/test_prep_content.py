"""Data prep checks content, not just counts (issue 13, item 7), cleans up after killed runs, and
stops on Ctrl-C / SIGTERM with one line (item 9).

A prepared folder carries SHA256SUMS (the `sha256sum -c` format) written at preparation; the
second run ("already prepared and verified") checks every file against it, so an empty, damaged,
missing or foreign file is named with what to do. Measured on the real Omniglot output (32,460
PNGs, warm cache, 2 busy cores): manifest check 0.65 s for the hashes, 1.25 s for the whole
second run; decoding every PNG instead 1.4 s, and it would miss pixel changes a valid image
still decodes with. Folders prepared before manifests are decoded once and given one.
"""
import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from data_prep import _common, miniimagenet, omniglot
from data_prep._common import MANIFEST, PrepError
from data_test_utils import REPO_ROOT, linked_copy, one_line_error, run_module, write_mini_subset

MINI = {"train": (2, 3), "val": (1, 3), "test": (1, 3)}


# -- small synthetic Omniglot: 2 alphabets x 2 characters x 20 drawings ---------------------------

@pytest.fixture
def tiny_omniglot(tmp_path, monkeypatch):
    monkeypatch.setattr(omniglot, "ARCHIVES", {"images_background.zip": (1, 2), "images_evaluation.zip": (1, 2)})
    monkeypatch.setattr(omniglot, "NUM_CHARACTERS", 4)
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for top, alphabet in (("images_background", "Greek"), ("images_evaluation", "Tengwar")):
        with zipfile.ZipFile(src / f"{top}.zip", "w") as z:
            for c in (1, 2):
                for i in range(20):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 2, (105, 105), dtype=np.uint8) * 255).convert("1").save(buf, "PNG")
                    z.writestr(f"{top}/{alphabet}/character0{c}/000{c}_{i + 1:02d}.png", buf.getvalue())
    root = omniglot.prepare_omniglot(src, tmp_path / "data")
    return src, root


def _verify(root):
    omniglot.verify_output(root, "nearest")


def test_manifest_lists_every_file_in_sha256sum_format(tiny_omniglot):
    _, root = tiny_omniglot
    lines = (root / MANIFEST).read_text().splitlines()
    assert len(lines) == 80
    digest, rel = lines[0].split("  ")
    assert rel == "Greek/character01/0001_01.png" and digest == hashlib.sha256((root / rel).read_bytes()).hexdigest()
    _verify(root)


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(b""), "is empty \\(0 bytes\\); delete .* and rerun"),
    (lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])), "is damaged \\(its sha256 differs"),
    (lambda p: p.rename(p.with_name("0001_99.png")), "0001_99.png was not written by the preparation"),
])
def test_damaged_file_is_named(tiny_omniglot, damage, message):
    _, root = tiny_omniglot
    victim = root / "Greek/character01/0001_07.png"
    damage(victim)
    with pytest.raises(PrepError, match=message) as e:
        omniglot.prepare_omniglot("absent", root.parent)
    assert "0001_07.png" in str(e.value) or "0001_99.png" in str(e.value)


def test_missing_and_foreign_files(tiny_omniglot):
    _, root = tiny_omniglot
    (root / "Greek/notes.txt").write_text("mine")
    with pytest.raises(PrepError, match="Greek/notes.txt was not written by the preparation"):
        _verify(root)
    (root / "Greek/notes.txt").unlink()
    manifest = (root / MANIFEST).read_text()
    (root / MANIFEST).write_text(manifest + f"{'0' * 64}  Greek/character01/0001_21.png\n")
    with pytest.raises(PrepError, match="0001_21.png is missing; delete"):
        _verify(root)
    (root / MANIFEST).write_text("not a manifest\n")
    with pytest.raises(PrepError, match=f"{MANIFEST}:1 is not a '<sha256>  <file>' line"):
        _verify(root)


def test_folder_without_manifest_is_decoded_once_then_given_one(tiny_omniglot, monkeypatch):
    _, root = tiny_omniglot
    (root / MANIFEST).unlink()
    victim = root / "Tengwar/character02/0002_03.png"
    good = victim.read_bytes()
    victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(PrepError, match="0002_03.png does not decode"):
        _verify(root)
    Image.new("L", (28, 28)).save(victim)
    with pytest.raises(PrepError, match="0002_03.png is a PNG image of mode L and size 28x28, expected PNG 1 28x28"):
        _verify(root)
    victim.write_bytes(good)
    _verify(root)
    assert len((root / MANIFEST).read_text().splitlines()) == 80
    # A read-only dataset (manifest not writable) is still verified, by decoding.
    (root / MANIFEST).unlink()

    def unwritable(*args):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(_common, "write_manifest", unwritable)
    _verify(root)
    assert not (root / MANIFEST).exists()


def test_zero_byte_file_in_the_real_prepared_folder_fails_the_second_run(omniglot_prepared, omniglot_source, tmp_path):
    """End to end on the real output (a hard-linked copy of it, the session's folder being
    shared): before, this run said "already prepared and verified"."""
    prepared = linked_copy(omniglot_prepared, tmp_path / "data")
    victim = sorted((prepared / "omniglot_resized" / "Korean" / "character07").glob("*.png"))[4]
    victim.unlink()  # a new, empty file; writing into the link would empty the shared one too
    victim.write_bytes(b"")
    result = run_module("data_prep.omniglot", f"--source_dir={omniglot_source}", f"--output_dir={prepared}")
    assert result.returncode == 1
    assert one_line_error(result.stderr, "data_prep.omniglot"), result.stderr
    assert f"{victim} is empty (0 bytes); delete {victim.parents[2]} and rerun" in result.stderr
    assert len((prepared / "omniglot_resized" / MANIFEST).read_text().splitlines()) == 32460
    assert (omniglot_prepared / "omniglot_resized" / victim.relative_to(prepared / "omniglot_resized")).stat().st_size


def test_damaged_jpeg_in_prepared_miniimagenet_is_named(tmp_path):
    """A flipped byte in a JPEG's entropy data still decodes; the manifest catches it."""
    rows = write_mini_subset(tmp_path / "csv", tmp_path / "images", MINI)
    root = miniimagenet.prepare_miniimagenet(tmp_path / "csv", tmp_path / "images", tmp_path / "data", MINI, workers=1)
    name, label = rows["val"][1]
    victim = root / "val" / label / name
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10
    victim.write_bytes(bytes(data))
    with Image.open(victim) as im:
        im.load()  # still an image
    with pytest.raises(PrepError, match=f"{name} is damaged"):
        miniimagenet.prepare_miniimagenet(tmp_path / "csv", tmp_path / "gone", tmp_path / "data", MINI)


# -- archives against the known checksums --------------------------------------------------------

def test_known_archives(omniglot_source):
    for name in omniglot.ARCHIVES:
        assert omniglot.is_known_archive(name, omniglot.archive_checksums(omniglot_source / name))  # the repacks
        assert omniglot.is_known_archive(name, (*omniglot.OFFICIAL_ARCHIVES[name], "0" * 64))  # the official zips
    assert not omniglot.is_known_archive("images_background.zip", (9_464_212, "0" * 32, "0" * 64))


def test_download_that_is_not_the_archive_is_refused_and_nothing_kept(tmp_path, omniglot_source):
    """The server answers with the wrong bytes (a proxy page, a truncated or swapped file): fetched
    twice, then refused; neither the archive nor a .part file remains."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "images_background.zip").write_bytes((omniglot_source / "images_background.zip").read_bytes()[:-10])
    src = tmp_path / "src"
    with pytest.raises(PrepError, match="images_background.zip gave 8588022 bytes with md5 [0-9a-f]{32}, expected "
                                        "9464212 bytes with md5 68d2efa1b9178cc56df9314c21c6e718 on 2 tries; nothing was kept"):
        omniglot.download_archives(src, mirror.as_uri() + "/")
    assert list(src.iterdir()) == []


def test_damaged_given_archive_says_what_to_delete(tmp_path, omniglot_source):
    src = tmp_path / "src"
    src.mkdir()
    (src / "images_background.zip").write_bytes((omniglot_source / "images_background.zip").read_bytes()[:1000])
    (src / "images_evaluation.zip").write_bytes((omniglot_source / "images_evaluation.zip").read_bytes())
    with pytest.raises(PrepError, match="images_background.zip is not a readable zip archive .*; delete it and rerun "
                                        "\\(--download fetches it again\\)"):
        omniglot.prepare_omniglot(src, tmp_path / "out")


def test_unknown_but_intact_archive_is_used_with_a_warning(tiny_omniglot, caplog):
    src, root = tiny_omniglot  # prepared in the fixture
    warnings = [r.getMessage() for r in caplog.get_records("setup") if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("is not a known Omniglot archive" in w and "used it" in w for w in warnings)
    assert (root / MANIFEST).exists()


# -- leftovers of killed runs, Ctrl-C and SIGTERM --------------------------------------------------

def test_temporary_folders_of_dead_runs_are_removed(tiny_omniglot):
    src, root = tiny_omniglot
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = root.parent / f".omniglot_resized.tmp-{host}-{int(dead.stdout)}-abc"
    live = root.parent / f".omniglot_resized.tmp-{host}-{os.getppid()}-abc"
    other_host = root.parent / f".omniglot_resized.tmp-elsewhere-{int(dead.stdout)}-abc"
    for folder in (stale, live, other_host):
        (folder / "Greek").mkdir(parents=True)
    assert _common.remove_stale_temporaries(root) == [stale]
    assert live.exists() and other_host.exists() and not stale.exists()


def _start_prep(omniglot_source, out):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-m", "data_prep.omniglot", f"--source_dir={omniglot_source}",
                             f"--output_dir={out}"], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_prep_is_one_line_and_leaves_nothing(tmp_path, omniglot_source, signum, status):
    out = tmp_path / "out"
    process = _start_prep(omniglot_source, out)
    try:
        deadline = time.time() + 120
        while not (out.is_dir() and any(p.rglob("*.png") for p in out.iterdir())):  # resizing has begun
            assert process.poll() is None and time.time() < deadline, "prep ended before it could be interrupted"
            time.sleep(0.05)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == status, stderr
    assert one_line_error(stderr, "data_prep.omniglot"), stderr
    assert f"interrupted by {signal.Signals(signum).name}; nothing was written" in stderr
    assert list(out.iterdir()) == []
