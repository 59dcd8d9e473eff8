"""data_prep.miniimagenet on generated images named as in (subsets of) the real split CSVs."""
import csv
import io

import numpy as np
import pytest
from PIL import Image

from data_prep import miniimagenet
from data_prep._common import PrepError
from data_test_utils import one_line_error, run_module, shared_file, write_mini_subset
from maml_tf.few_shot_data import FewShotSampler, load_miniimagenet

SMALL = {"train": (5, 6), "val": (2, 6), "test": (2, 6)}


def test_real_csvs_parse_to_the_paper_split():
    splits = miniimagenet.read_splits(shared_file("miniimagenet", "train.csv").parent)
    assert {s: len(rows) for s, rows in splits.items()} == {"train": 38400, "val": 9600, "test": 12000}
    assert {s: len({label for _, label in rows}) for s, rows in splits.items()} == {"train": 64, "val": 16, "test": 20}


@pytest.fixture
def small_source(tmp_path):
    rows = write_mini_subset(tmp_path / "csv", tmp_path / "images", SMALL)
    return tmp_path / "csv", tmp_path / "images", rows


def test_prepare_writes_84x84_rgb_tree(small_source, tmp_path, caplog):
    """84x84 RGB JPEGs of the Lanczos-resized sources in the split/class tree, loadable, with a
    final progress line for each pass over the images: 'resized images N/N (...)', then the
    decoding check and the manifest's hashing; a second run's check against the manifest too."""
    csv_dir, images_dir, rows = small_source
    with caplog.at_level("INFO"):
        root = miniimagenet.prepare_miniimagenet(csv_dir, images_dir, tmp_path / "data", SMALL, workers=2)
        miniimagenet.prepare_miniimagenet(csv_dir, images_dir, tmp_path / "data", SMALL, workers=2)
    total = sum(len(r) for r in rows.values())
    for label in ("resized images", "prepared images decoded", "prepared files hashed for SHA256SUMS",
                  "prepared files checked against SHA256SUMS"):
        assert any(r.getMessage().startswith(f"{label} {total}/{total} (") for r in caplog.records), label
    assert root == tmp_path / "data" / "miniImagenet"
    for split, split_rows in rows.items():
        for name, label in split_rows:
            with Image.open(root / split / label / name) as im:
                assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (84, 84))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["miniImagenet"]
    # Lanczos of the source, saved as JPEG: pixel for pixel what encoding our own Lanczos resize
    # at the prep's quality gives (the JPEG loss alone is as large as the difference between
    # resampling filters, so only an exact comparison can tell them apart).
    name, label = rows["train"][0]
    resized = Image.open(images_dir / name).convert("RGB").resize((84, 84), Image.Resampling.LANCZOS)
    encoded = io.BytesIO()
    resized.save(encoded, format="JPEG", quality=miniimagenet.JPEG_QUALITY)
    expected = np.asarray(Image.open(encoded))
    np.testing.assert_array_equal(np.asarray(Image.open(root / "train" / label / name)), expected)

    data = load_miniimagenet(tmp_path / "data")
    assert data["train"].images.shape == (5, 6, 84, 84, 3) and data["val"].images.shape == (2, 6, 84, 84, 3)
    assert list(data["train"].names) == sorted({label for _, label in rows["train"]})
    batch = FewShotSampler(data["train"], 5, 1, 5, rotate=False).sample(np.random.default_rng(0), 4)
    assert batch.support_inputs.shape == (4, 5, 84, 84, 3) and batch.query_inputs.shape == (4, 25, 84, 84, 3)
    assert 0.0 <= batch.support_inputs.min() and batch.support_inputs.max() <= 1.0
    with pytest.raises(ValueError, match="num_classes=5 \\(--num_classes\\) is more than the 2 classes"):
        FewShotSampler(data["val"], 5, 1, 15, rotate=False)
    with pytest.raises(ValueError, match="1 \\+ 15 is more than the 6 images per class"):
        FewShotSampler(data["train"], 5, 1, 15, rotate=False)


def test_second_run_only_verifies(small_source, tmp_path):
    csv_dir, images_dir, _ = small_source
    miniimagenet.prepare_miniimagenet(csv_dir, images_dir, tmp_path / "data", SMALL, workers=1)
    files = {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*")}
    result = run_module("data_prep.miniimagenet", f"--csv_dir={csv_dir}", f"--images_dir={tmp_path / 'gone'}",
                        f"--output_dir={tmp_path / 'data'}", "--nocheck_paper_counts")
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "data").rglob("*")} == files
    # An output that no longer matches the CSVs is reported, not silently accepted.
    next((tmp_path / "data" / "miniImagenet" / "val").iterdir()).joinpath("extra.jpg").write_bytes(b"")
    with pytest.raises(PrepError, match="does not hold exactly the images val.csv lists"):
        miniimagenet.prepare_miniimagenet(csv_dir, images_dir, tmp_path / "data", SMALL)


def _cli_error(*args):
    result = run_module("data_prep.miniimagenet", *args)
    assert result.returncode == 1
    assert one_line_error(result.stderr, "data_prep.miniimagenet"), result.stderr
    return result.stderr


def test_paper_counts_are_the_default(small_source, tmp_path):
    csv_dir, images_dir, _ = small_source
    err = _cli_error(f"--csv_dir={csv_dir}", f"--images_dir={images_dir}", f"--output_dir={tmp_path / 'data'}")
    assert "train.csv has 5 classes with [6] images each, expected 64 x 600" in err
    assert "--nocheck_paper_counts" in err
    assert not (tmp_path / "data").exists()


def test_missing_image_is_named(small_source, tmp_path):
    csv_dir, images_dir, rows = small_source
    missing = rows["val"][3][0]
    (images_dir / missing).unlink()
    err = _cli_error(f"--csv_dir={csv_dir}", f"--images_dir={images_dir}", f"--output_dir={tmp_path / 'data'}",
                     "--nocheck_paper_counts")
    assert f"1 images listed in the CSVs are missing from --images_dir={images_dir}, e.g. {missing}" in err
    assert not (tmp_path / "data").exists()


def test_missing_csv_and_images_dir(small_source, tmp_path):
    csv_dir, images_dir, _ = small_source
    (csv_dir / "test.csv").unlink()
    err = _cli_error(f"--csv_dir={csv_dir}", f"--images_dir={images_dir}", f"--output_dir={tmp_path / 'data'}")
    assert f"split file not found: {csv_dir / 'test.csv'}" in err
    err = _cli_error(f"--csv_dir={shared_file('miniimagenet', 'test.csv').parent}",
                     f"--images_dir={tmp_path / 'nowhere'}", f"--output_dir={tmp_path / 'data'}")
    assert f"--images_dir={tmp_path / 'nowhere'} is not a folder" in err


@pytest.mark.parametrize("content,message", [
    ("file,label\nx.jpg,n01\n", "first line must be the header 'filename,label'"),
    ("filename,label\nx.jpg\n", "val.csv:2: expected 'filename,label'"),
    ("filename,label\n", "lists no images"),
    ("filename,label\nx.jpg,n01\nx.jpg,n01\n", "lists x.jpg more than once"),
    ("filename,label\nx.jpg,../../escaped\n", "val.csv:2: the label '../../escaped' is not a plain file or folder name"),
    ("filename,label\nx.jpg,/tmp/abs\n", "val.csv:2: the label '/tmp/abs' is not a plain"),
    ("filename,label\nx.jpg,..\n", "val.csv:2: the label '..' is not a plain"),
    ("filename,label\nsub/x.jpg,n01\n", "val.csv:2: the filename 'sub/x.jpg' is not a plain"),
])
def test_bad_csv(small_source, content, message):
    """A malformed split file is refused naming file and line; labels and filenames become
    output folders and files, so one that would leave the output folder is refused too."""
    csv_dir, _, _ = small_source
    (csv_dir / "val.csv").write_text(content)
    with pytest.raises(PrepError, match=message):
        miniimagenet.read_splits(csv_dir, None)


def test_class_in_two_splits(small_source):
    csv_dir, _, rows = small_source
    with open(csv_dir / "val.csv", "a", newline="") as f:
        csv.writer(f, lineterminator="\n").writerow(["extra.jpg", rows["train"][0][1]])
    with pytest.raises(PrepError, match="is in both train.csv and val.csv"):
        miniimagenet.read_splits(csv_dir, None)


def test_corrupt_image_leaves_nothing(small_source, tmp_path):
    csv_dir, images_dir, rows = small_source
    bad = rows["test"][-1][0]
    (images_dir / bad).write_bytes(b"not a jpeg")
    with pytest.raises(PrepError, match=f"cannot read image {images_dir / bad}"):
        miniimagenet.prepare_miniimagenet(csv_dir, images_dir, tmp_path / "data", SMALL, workers=2)
    assert list((tmp_path / "data").iterdir()) == []


def test_workers_below_one_are_refused(small_source, tmp_path):
    """--workers=0 or less is one line naming the flag (it used to mean one per CPU, or fail
    inside the thread pool), before anything is written."""
    csv_dir, images_dir, _ = small_source
    err = _cli_error(f"--csv_dir={csv_dir}", f"--images_dir={images_dir}", f"--output_dir={tmp_path / 'data'}",
                     "--nocheck_paper_counts", "--workers=0")
    assert "--workers=0" in err
    with pytest.raises(PrepError, match="--workers must be at least 1"):
        miniimagenet.prepare_miniimagenet(csv_dir, images_dir, tmp_path / "data", SMALL, workers=-1)
    assert not (tmp_path / "data").exists()


def test_images_behind_symlinked_folders_are_found_once(small_source, tmp_path):
    """find_images follows a symlinked --images_dir/train (as distributed image sets are often
    linked in), and a link back up the tree (a loop) is searched once, not forever."""
    csv_dir, images_dir, rows = small_source
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "train").symlink_to(images_dir, target_is_directory=True)
    (images_dir / "loop").symlink_to(linked, target_is_directory=True)
    names = [name for split_rows in rows.values() for name, _ in split_rows]
    found = miniimagenet.find_images(linked, names)
    assert set(found) == set(names)
    assert all(found[name] == linked / "train" / name for name in names)
