"""Path flags of data_prep (issue 13, item 8): `~` is expanded (the shell leaves `--x=~/y` alone),
and the MiniImagenet images are found by file name in any folder layout below --images_dir."""
import os
import shutil
import subprocess
import sys

import pytest

from data_prep import miniimagenet, omniglot
from data_prep._common import MANIFEST, PrepError
from data_test_utils import REPO_ROOT, one_line_error, write_mini_subset

MINI = {"train": (2, 3), "val": (1, 3), "test": (1, 3)}


def _run_elsewhere(module, args, cwd, home):
    """`python -m module args` from `cwd` (not the repository), with HOME=`home`."""
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_tilde_in_omniglot_paths(tmp_path, omniglot_prepared, omniglot_source):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    (home / "data").mkdir(parents=True)
    (home / "data" / "omniglot_resized").symlink_to(omniglot_prepared / "omniglot_resized")
    result = _run_elsewhere("data_prep.omniglot", ["--source_dir=~/nowhere", "--output_dir=~/data"], cwd, home)
    assert result.returncode == 0, result.stderr
    assert f"{home}/data/omniglot_resized already prepared and verified" in result.stderr
    assert not (cwd / "~").exists() and not (REPO_ROOT / "~").exists()
    # --source_dir too: the archives are looked for under $HOME.
    result = _run_elsewhere("data_prep.omniglot", ["--source_dir=~/archives", "--output_dir=~/new"], cwd, home)
    assert result.returncode == 1 and f"archive not found: {home}/archives/images_background.zip" in result.stderr
    assert not (cwd / "~").exists()


def test_tilde_in_download_and_miniimagenet_paths(tmp_path, monkeypatch, omniglot_source):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    shutil.copy(omniglot_source / "images_evaluation.zip", tmp_path / "src")
    omniglot.download_archives("~/src", omniglot_source.as_uri() + "/")
    assert (tmp_path / "src" / "images_background.zip").is_file()
    write_mini_subset(tmp_path / "csv", tmp_path / "images", MINI)
    root = miniimagenet.prepare_miniimagenet("~/csv", "~/images", "~/data", MINI, workers=1)
    assert root == tmp_path / "data" / "miniImagenet" and (root / MANIFEST).is_file()
    assert not (tmp_path / "~").exists()


def _nest(images_dir, rows):
    """Move the flat images into the distributed sets' layout: <split>/<wnid>/<file>."""
    for split, split_rows in rows.items():
        for name, label in split_rows:
            (images_dir / split / label).mkdir(parents=True, exist_ok=True)
            (images_dir / name).rename(images_dir / split / label / name)


def test_nested_images_dir(tmp_path):
    rows = write_mini_subset(tmp_path / "csv", tmp_path / "images", MINI)
    _nest(tmp_path / "images", rows)
    (tmp_path / "images" / "unrelated.jpg").write_bytes(b"not listed, not read")
    root = miniimagenet.prepare_miniimagenet(tmp_path / "csv", tmp_path / "images", tmp_path / "data", MINI, workers=1)
    name, label = rows["test"][2]
    assert (root / "test" / label / name).is_file()
    assert len((root / MANIFEST).read_text().splitlines()) == sum(len(r) for r in rows.values())


def test_hidden_folders_are_not_searched(tmp_path):
    rows = write_mini_subset(tmp_path / "csv", tmp_path / "images", MINI)
    name = rows["train"][0][0]
    (tmp_path / "images" / ".old-copy").mkdir()
    shutil.copy(tmp_path / "images" / name, tmp_path / "images" / ".old-copy" / name)
    found = miniimagenet.find_images(tmp_path / "images", [name])
    assert found == {name: tmp_path / "images" / name}


def test_duplicate_image_name_is_one_line_naming_both(tmp_path):
    rows = write_mini_subset(tmp_path / "csv", tmp_path / "images", MINI)
    _nest(tmp_path / "images", rows)
    name, label = rows["val"][0]
    (tmp_path / "images" / "extra").mkdir()
    shutil.copy(tmp_path / "images" / "val" / label / name, tmp_path / "images" / "extra" / name)
    result = _run_elsewhere("data_prep.miniimagenet", [f"--csv_dir={tmp_path / 'csv'}", f"--images_dir={tmp_path / 'images'}",
                                                      f"--output_dir={tmp_path / 'data'}", "--nocheck_paper_counts"],
                            tmp_path, tmp_path)
    assert result.returncode == 1
    assert one_line_error(result.stderr, "data_prep.miniimagenet"), result.stderr
    assert (f"{name} is in --images_dir twice: {tmp_path / 'images' / 'extra' / name} and "
            f"{tmp_path / 'images' / 'val' / label / name}; remove one") in result.stderr
    assert not (tmp_path / "data").exists()


def test_missing_image_in_nested_layout(tmp_path):
    rows = write_mini_subset(tmp_path / "csv", tmp_path / "images", MINI)
    _nest(tmp_path / "images", rows)
    name, label = rows["train"][4]
    (tmp_path / "images" / "train" / label / name).unlink()
    with pytest.raises(PrepError, match=f"1 images listed in the CSVs are missing from --images_dir=.*, e.g. {name}"):
        miniimagenet.prepare_miniimagenet(tmp_path / "csv", tmp_path / "images", tmp_path / "data", MINI)


def test_output_dir_that_is_a_file_is_one_line(tmp_path, omniglot_source):
    (tmp_path / "blocker").write_text("a file where the output folder should go")
    result = _run_elsewhere("data_prep.omniglot", [f"--source_dir={omniglot_source}", "--output_dir=~/blocker/data"],
                            tmp_path, tmp_path)
    assert result.returncode == 1
    assert one_line_error(result.stderr, "data_prep.omniglot"), result.stderr
    assert str(tmp_path / "blocker") in result.stderr
