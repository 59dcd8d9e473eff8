"""data_prep.omniglot on the real archives, plus its failure modes on broken ones."""
import hashlib
import io
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from data_prep import omniglot
from data_prep._common import PREP_INFO, PrepError, write_prep_info
from data_test_utils import one_line_error, run_module

# sha256 of the decoded 28x28 pixels (as 'L': 0 = ink, 255 = paper) of a few output files.
CHECKSUMS = {
    "Greek/character01/0394_01.png": ("0fc423e72b14f383d18def21a9c56261f5b473784f5364b3a5a9899e8c45726c", 57),
    "Angelic/character01/0965_01.png": ("c85983182ab6db56a3f356539048828cd1312a0ae59a926fa30b3e483e47bf66", 128),
    "Tifinagh/character55/0964_20.png": ("943874b6e5ab93f660523c9771c237de52260805e5358b79caf77b9b01ad3263", 43),
}


def test_counts_and_binary_28x28(omniglot_prepared):
    root = omniglot_prepared / "omniglot_resized"
    alphabets = [a for a in root.iterdir() if a.is_dir()]
    characters = [c for a in alphabets for c in a.iterdir()]
    assert len(alphabets) == 50
    assert len(characters) == 1623
    assert {len(list(c.iterdir())) for c in characters} == {20}
    for c in characters[::200]:
        for png in sorted(c.iterdir())[:3]:
            with Image.open(png) as im:
                assert (im.format, im.mode, im.size) == ("PNG", "1", (28, 28))
                assert set(np.unique(np.asarray(im.convert("L")))) <= {0, 255}
    assert not [p for p in omniglot_prepared.iterdir() if p.name != "omniglot_resized"], "temp folder left"


def test_pixel_checksums(omniglot_prepared):
    for rel, (digest, ink) in CHECKSUMS.items():
        pixels = np.asarray(Image.open(omniglot_prepared / "omniglot_resized" / rel).convert("L"))
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == digest, rel
        assert int((pixels == 0).sum()) == ink, rel


def test_output_equals_originals_lanczos_call(omniglot_prepared, omniglot_source):
    """The original ran Image.resize((28, 28), LANCZOS) on the 1-bit PNGs; ours must match it."""
    for archive, prefix in [("images_background.zip", "images_background/Korean/character07/"),
                            ("images_evaluation.zip", "images_evaluation/Tengwar/character12/")]:
        with zipfile.ZipFile(omniglot_source / archive) as z:
            members = [n for n in z.namelist() if n.startswith(prefix) and n.endswith(".png")]
            assert len(members) == 20
            for member in members:
                original = Image.open(io.BytesIO(z.read(member))).resize((28, 28), resample=Image.LANCZOS)
                ours = Image.open(omniglot_prepared / "omniglot_resized" / member.split("/", 1)[1])
                assert original.mode == ours.mode == "1"
                assert original.tobytes() == ours.tobytes(), member


def test_lanczos_option_is_greyscale(omniglot_source):
    with zipfile.ZipFile(omniglot_source / "images_background.zip") as z:
        data = z.read("images_background/Greek/character01/0394_01.png")
    small = omniglot.resize(Image.open(io.BytesIO(data)), "lanczos")
    assert (small.mode, small.size) == ("L", (28, 28))
    assert len(np.unique(np.asarray(small))) > 2


def test_resizing_reports_progress(omniglot_source, tmp_path, caplog):
    """The resize loop logs '<archive>: resized characters done/total (rate, ETA)' lines
    (report.console.ProgressLine), always once at the end."""
    archive = omniglot_source / "images_background.zip"
    characters = dict(list(omniglot.list_characters(archive).items())[:3])
    with caplog.at_level("INFO", logger=omniglot.log.name):
        omniglot._resize_archive(archive, characters, tmp_path, "nearest")
    lines = [r.getMessage() for r in caplog.records if "resized characters" in r.getMessage()]
    assert lines and lines[-1].startswith("images_background.zip: resized characters 3/3 (")
    assert len(list(tmp_path.glob("*/*/*.png"))) == 3 * 20


def test_second_run_only_verifies(omniglot_prepared, omniglot_source):
    root = omniglot_prepared / "omniglot_resized"
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    omniglot.prepare_omniglot(omniglot_source / "absent", omniglot_prepared)  # archives not needed
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before
    result = run_module("data_prep.omniglot", f"--source_dir={omniglot_source}", f"--output_dir={omniglot_prepared}")
    assert result.returncode == 0, result.stderr
    assert "already prepared" in result.stderr


def test_other_resample_on_existing_output_is_refused(omniglot_prepared, omniglot_source):
    result = run_module("data_prep.omniglot", f"--source_dir={omniglot_source}",
                        f"--output_dir={omniglot_prepared}", "--resample=lanczos")
    assert result.returncode == 1
    assert _one_line_error(result.stderr) and "resample=nearest" in result.stderr


def _one_line_error(stderr):
    return one_line_error(stderr, "data_prep.omniglot")


def _cli_error(source_dir, output_dir, *extra):
    result = run_module("data_prep.omniglot", f"--source_dir={source_dir}", f"--output_dir={output_dir}", *extra)
    assert result.returncode == 1
    assert _one_line_error(result.stderr), result.stderr
    assert not output_dir.exists() or not list(output_dir.iterdir()), "partial output left behind"
    return result.stderr


def test_missing_archive(tmp_path, omniglot_source):
    (tmp_path / "src").mkdir()
    shutil.copy(omniglot_source / "images_evaluation.zip", tmp_path / "src")
    err = _cli_error(tmp_path / "src", tmp_path / "out")
    assert "archive not found" in err and "images_background.zip" in err and "--download" in err


def test_truncated_archive(tmp_path, omniglot_source):
    src = tmp_path / "src"
    src.mkdir()
    data = (omniglot_source / "images_background.zip").read_bytes()
    (src / "images_background.zip").write_bytes(data[: len(data) // 2])
    shutil.copy(omniglot_source / "images_evaluation.zip", src)
    err = _cli_error(src, tmp_path / "out")
    assert "images_background.zip is not a readable zip archive" in err


def test_wrong_archive(tmp_path, omniglot_source):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(omniglot_source / "images_evaluation.zip", src / "images_background.zip")  # swapped
    shutil.copy(omniglot_source / "images_evaluation.zip", src)
    err = _cli_error(src, tmp_path / "out")
    assert "is not Omniglot's images_background.zip" in err


def test_not_a_zip(tmp_path, omniglot_source):
    src = tmp_path / "src"
    src.mkdir()
    (src / "images_background.zip").write_text("<html>404</html>")
    shutil.copy(omniglot_source / "images_evaluation.zip", src)
    assert "not a readable zip archive" in _cli_error(src, tmp_path / "out")


def test_corrupt_member_leaves_nothing(tmp_path, omniglot_source):
    """Damage inside a member's data: some characters are already written to the temp
    folder when it is found, and still nothing may remain under the output folder."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(omniglot_source / "images_evaluation.zip", src)
    data = bytearray((omniglot_source / "images_background.zip").read_bytes())
    prefix = "images_background/Alphabet_of_the_Magi/character03/"
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.getinfo(prefix + _first_png(z, prefix))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start, start + 40):
        data[i] ^= 0x5A
    (src / "images_background.zip").write_bytes(bytes(data))
    out = tmp_path / "out"
    err = _cli_error(src, out)
    assert "images_background.zip is corrupt" in err
    assert list(out.iterdir()) == []  # the parent was created, but no temp folder remains


def _first_png(z, prefix):
    return sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith(".png"))[0].rsplit("/", 1)[1]


def test_interrupt_leaves_nothing(tmp_path, omniglot_source, monkeypatch):
    calls = []

    def flaky_resize(image, resample):
        calls.append(1)
        if len(calls) > 50:
            raise KeyboardInterrupt
        return image.resize((28, 28))

    monkeypatch.setattr(omniglot, "resize", flaky_resize)
    with pytest.raises(KeyboardInterrupt):
        omniglot.prepare_omniglot(omniglot_source, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_download_unreachable_is_one_line(tmp_path):
    err = _cli_error(tmp_path / "src", tmp_path / "out", "--download", "--download_url=http://127.0.0.1:9/")
    assert "could not download http://127.0.0.1:9/images_background.zip" in err
    assert not list((tmp_path / "src").glob("*.part"))


def test_download_fetches_missing_archives(tmp_path, omniglot_source):
    """A file:// URL stands in for the network; only the missing archive is fetched."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "images_evaluation.zip").write_bytes(b"already here")
    omniglot.download_archives(src, omniglot_source.as_uri() + "/")
    assert (src / "images_background.zip").read_bytes() == (omniglot_source / "images_background.zip").read_bytes()
    assert (src / "images_evaluation.zip").read_bytes() == b"already here"


def test_alphabet_collision_is_refused(tmp_path, monkeypatch):
    """Alphabet names must not repeat across the archives (they do not in the real ones)."""
    monkeypatch.setattr(omniglot, "ARCHIVES", {"images_background.zip": (1, 1), "images_evaluation.zip": (1, 1)})
    src = tmp_path / "src"
    src.mkdir()
    for top in ("images_background", "images_evaluation"):
        with zipfile.ZipFile(src / f"{top}.zip", "w") as z:
            for i in range(20):
                buf = io.BytesIO()
                Image.new("1", (105, 105), 1).save(buf, format="PNG")
                z.writestr(f"{top}/Greek/character01/0001_{i + 1:02d}.png", buf.getvalue())
    with pytest.raises(PrepError, match="alphabet names appear in both archives: \\['Greek'\\]"):
        omniglot.prepare_omniglot(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_real_archives_do_not_share_alphabets(omniglot_source):
    background = {a for a, _ in omniglot.list_characters(omniglot_source / "images_background.zip")}
    evaluation = {a for a, _ in omniglot.list_characters(omniglot_source / "images_evaluation.zip")}
    assert (len(background), len(evaluation)) == (30, 20)
    assert not background & evaluation


def test_incomplete_existing_output_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(omniglot, "NUM_CHARACTERS", 2)
    root = tmp_path / "data" / "omniglot_resized"
    for character in ("Greek/character01", "Greek/character02"):
        (root / character).mkdir(parents=True)
        for i in range(20):
            Image.new("1", (28, 28), 1).save(root / character / f"0001_{i + 1:02d}.png")
    write_prep_info(root, {"resample": "nearest"})
    omniglot.prepare_omniglot(tmp_path / "absent", tmp_path / "data")  # complete: verifies
    (root / "Greek/character02/0001_99.png").write_bytes(b"")
    with pytest.raises(PrepError, match="character02 has 21 PNGs, expected 20; delete"):
        omniglot.prepare_omniglot(tmp_path / "absent", tmp_path / "data")
    shutil.rmtree(root / "Greek/character02")
    with pytest.raises(PrepError, match="has 1 character folders, expected 2; delete"):
        omniglot.prepare_omniglot(tmp_path / "absent", tmp_path / "data")
    (root / PREP_INFO).unlink()
    with pytest.raises(PrepError, match="no readable PREP_INFO.json"):
        omniglot.prepare_omniglot(tmp_path / "absent", tmp_path / "data")


def _one_archive_source(tmp_path, monkeypatch, png_bytes):
    """Two one-character archives whose first drawing is `png_bytes` (zip CRCs intact)."""
    monkeypatch.setattr(omniglot, "ARCHIVES", {"images_background.zip": (1, 1), "images_evaluation.zip": (1, 1)})
    src = tmp_path / "src"
    src.mkdir()
    for top, alphabet in (("images_background", "Greek"), ("images_evaluation", "Latin")):
        with zipfile.ZipFile(src / f"{top}.zip", "w") as z:
            for i in range(20):
                buf = io.BytesIO()
                Image.new("1", (105, 105), 1).save(buf, format="PNG")
                data = png_bytes if (top, i) == ("images_background", 0) else buf.getvalue()
                z.writestr(f"{top}/{alphabet}/character01/0001_{i + 1:02d}.png", data)
    return src


def _png(mode, size):
    buf = io.BytesIO()
    Image.new(mode, size, 1).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("png_bytes,message", [
    (_png("1", (105, 105))[:40], "does not decode as a PNG"),  # truncated
    (_png("1", (105, 105))[:11] + b"\xff" + _png("1", (105, 105))[12:], "does not decode as a PNG"),  # damaged IHDR
    (bytes(100), "does not decode as a PNG"),
    (_png("1", (60, 200)), "is a PNG image of mode 1 and size 60x200, expected a 1-bit PNG of 105x105"),
    (_png("L", (105, 105)), "is a PNG image of mode L and size 105x105, expected a 1-bit PNG"),
], ids=["truncated", "damaged_header", "zeros", "other_size", "greyscale"])
def test_a_damaged_or_foreign_drawing_is_named(tmp_path, monkeypatch, png_bytes, message):
    """A drawing whose bytes are damaged under an intact zip CRC, or which is not a 105x105
    1-bit PNG, stops the preparation with one error naming the archive and the member (not a
    Pillow traceback, nor a silently squashed image), and leaves no output."""
    src = _one_archive_source(tmp_path, monkeypatch, png_bytes)
    with pytest.raises(PrepError) as raised:
        omniglot.prepare_omniglot(src, tmp_path / "out")
    assert str(raised.value).startswith(f"{src / 'images_background.zip'}: images_background/Greek/character01/0001_01.png ")
    assert message in str(raised.value)
    assert not (tmp_path / "out" / omniglot.OUTPUT_NAME).exists()
