"""load_omniglot on the real prepared data and the loaders' errors on missing or wrong folders."""
import os
import random
import shutil

import numpy as np
import pytest
from PIL import Image

from maml_tf.few_shot_data import FewShotSampler, load_miniimagenet, load_omniglot, omniglot_splits


def test_split_sizes_and_contents(omniglot_data):
    sizes = {s: c.images.shape for s, c in omniglot_data.items()}
    assert sizes == {"train": (1100, 20, 28, 28, 1), "val": (100, 20, 28, 28, 1), "test": (423, 20, 28, 28, 1)}
    names = [set(c.names) for c in omniglot_data.values()]
    assert len(set.union(*names)) == 1623 and sum(map(len, names)) == 1623
    for classes in omniglot_data.values():
        assert classes.images.dtype == np.uint8 and classes.invert
        assert set(np.unique(classes.images[:50])) == {0, 255}


def test_split_matches_the_original_procedure(omniglot_prepared, omniglot_data):
    """The original: list '<folder>/<alphabet>/<character>' paths, random.seed(1), shuffle,
    1100 / 100 / rest; we list sorted, so replaying that on sorted paths must agree."""
    root = str(omniglot_prepared / "omniglot_resized")
    paths = sorted(os.path.join(root, a, c) for a in os.listdir(root) if os.path.isdir(os.path.join(root, a))
                   for c in os.listdir(os.path.join(root, a)))
    state = random.getstate()
    try:
        random.seed(1)
        random.shuffle(paths)
    finally:
        random.setstate(state)
    names = [os.path.relpath(p, root) for p in paths]
    assert list(omniglot_data["train"].names) == names[:1100]
    assert list(omniglot_data["val"].names) == names[1100:1200]
    assert list(omniglot_data["test"].names) == names[1200:]
    # Pinned, so a change of listing or shuffling cannot pass unnoticed.
    assert omniglot_data["train"].names[:2] == ("Gurmukhi/character23", "Malayalam/character36")
    assert omniglot_data["val"].names[:2] == ("Tifinagh/character11", "N_Ko/character16")
    assert omniglot_data["test"].names[:2] == ("Keble/character04", "Atemayar_Qelisayer/character08")


def test_images_match_files(omniglot_prepared, omniglot_data):
    test = omniglot_data["test"]
    folder = omniglot_prepared / "omniglot_resized" / test.names[7]
    first = sorted(folder.iterdir())[0]
    np.testing.assert_array_equal(test.images[7, 0, :, :, 0], np.asarray(Image.open(first).convert("L")))


def test_sampled_omniglot_is_inverted_binary(omniglot_data):
    batch = FewShotSampler(omniglot_data["train"], 5, 1, 1, rotate=True).sample(np.random.default_rng(0), 32)
    assert set(np.unique(batch.support_inputs)) == {0.0, 1.0}
    assert batch.support_inputs.mean() < 0.3  # strokes are 1 and sparse, the paper background 0


def test_omniglot_splits_function_is_pure():
    state = random.getstate()
    omniglot_splits([f"a/c{i}" for i in range(1623)])
    assert random.getstate() == state


def test_load_accepts_either_folder(omniglot_prepared):
    only_val = load_omniglot(omniglot_prepared / "omniglot_resized", splits=("val",))
    assert list(only_val) == ["val"] and only_val["val"].images.shape[0] == 100


def test_missing_folder_names_path_and_prep_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no omniglot_resized folder at {tmp_path}.*data_prep.omniglot"):
        load_omniglot(tmp_path)
    with pytest.raises(FileNotFoundError, match="data_prep.miniimagenet"):
        load_miniimagenet(tmp_path)
    with pytest.raises(ValueError, match="splits must be"):
        load_omniglot(tmp_path, splits=("training",))


def test_wrong_omniglot_layout(tmp_path):
    (tmp_path / "omniglot_resized" / "Greek" / "character01").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds 1 character folders, expected 1623.*data_prep.omniglot"):
        load_omniglot(tmp_path)


def test_unresized_image_is_reported(tmp_path):
    root = tmp_path / "miniImagenet" / "train"
    for wnid in ("n01", "n02"):
        (root / wnid).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (84, 84)).save(root / wnid / f"{wnid}_{i}.jpg")
    Image.new("RGB", (500, 375)).save(root / "n02" / "n02_1.jpg")
    with pytest.raises(ValueError, match="n02_1.jpg is 500x375, expected 84x84"):
        load_miniimagenet(tmp_path, splits=("train",))
    (root / "n02" / "n02_1.jpg").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="cannot read image .*n02_1.jpg.*data_prep.miniimagenet"):
        load_miniimagenet(tmp_path, splits=("train",))
    os.remove(root / "n02" / "n02_1.jpg")
    with pytest.raises(ValueError, match="n02 has 2 images, expected 3"):
        load_miniimagenet(tmp_path, splits=("train",))
    shutil.rmtree(root / "n02")
    assert load_miniimagenet(tmp_path, splits=("train",))["train"].images.shape == (1, 3, 84, 84, 3)
    with pytest.raises(ValueError, match="val has no class folders"):
        load_miniimagenet(tmp_path, splits=("val",))
