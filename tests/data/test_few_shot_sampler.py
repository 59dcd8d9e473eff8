"""Task structure of FewShotSampler on synthetic images whose identity and rotation are recoverable."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from maml_tf.episodes import EpisodeBatch
from maml_tf.few_shot_data import ClassImages, FewShotSampler

CLASSES, PER_CLASS, SIZE = 30, 12, 6


@pytest.fixture(scope="module")
def synthetic():
    """Random 6x6 images: every (class, image, quarter turn) gives a distinct picture."""
    images = np.random.default_rng(0).integers(0, 256, size=(CLASSES, PER_CLASS, SIZE, SIZE, 1), dtype=np.uint8)
    lookup = {}
    for c in range(CLASSES):
        for i in range(PER_CLASS):
            for k in range(4):
                lookup[np.rot90(images[c, i], k).tobytes()] = (c, i, k)
    assert len(lookup) == CLASSES * PER_CLASS * 4
    return ClassImages(images, tuple(f"class{c}" for c in range(CLASSES)), invert=True), lookup


def identify(batch_images, lookup, invert=True):
    """[tasks, rows, H, W, 1] floats -> int array [tasks, rows, 3] of (class, image, turns)."""
    pixels = np.float32(1) - batch_images if invert else batch_images
    as_uint8 = np.rint(pixels * 255).astype(np.uint8)
    return np.array([[lookup[img.tobytes()] for img in task] for task in as_uint8])


def by_label(ids, labels, n):
    """Group identified rows by their label: list over labels of [rows, 3]."""
    which = labels.argmax(-1)
    return [ids[which == j] for j in range(n)]


@pytest.mark.parametrize("n,k,q,rotate", [(5, 1, 1, True), (5, 5, 5, True), (20, 1, 1, True),
                                          (5, 1, 7, False), (3, 4, 2, False)])
def test_task_structure(synthetic, n, k, q, rotate):
    classes, lookup = synthetic
    sampler = FewShotSampler(classes, n, k, q, rotate)
    batch = sampler.sample(np.random.default_rng(1), 8)
    assert isinstance(batch, EpisodeBatch)
    assert batch.support_inputs.shape == (8, n * k, SIZE, SIZE, 1) and batch.query_inputs.shape == (8, n * q, SIZE, SIZE, 1)
    assert batch.support_labels.shape == (8, n * k, n) and batch.query_labels.shape == (8, n * q, n)
    assert all(x.dtype == np.float32 for x in batch)
    # Rows are sample-major: row r carries label r % N, in both sets.
    np.testing.assert_array_equal(batch.support_labels.argmax(-1), np.tile(np.arange(n), (8, k)))
    np.testing.assert_array_equal(batch.query_labels.argmax(-1), np.tile(np.arange(n), (8, q)))
    assert set(np.unique(batch.support_labels)) == {0.0, 1.0} and (batch.support_labels.sum(-1) == 1).all()
    ids_a, ids_b = identify(batch.support_inputs, lookup), identify(batch.query_inputs, lookup)
    for t in range(8):
        support, query = by_label(ids_a[t], batch.support_labels[t], n), by_label(ids_b[t], batch.query_labels[t], n)
        task_classes = []
        for j in range(n):
            assert len(support[j]) == k and len(query[j]) == q
            both = np.concatenate([support[j], query[j]])
            assert len(set(both[:, 0])) == 1, "a label must hold one class"
            assert len(set(both[:, 1])) == k + q, "support and query images must be distinct"
            assert len(set(both[:, 2])) == 1, "one rotation per class within a task"
            if not rotate:
                assert both[0, 2] == 0
            task_classes.append(both[0, 0])
        assert len(set(task_classes)) == n, "N distinct classes"


def test_rotations_vary_across_classes(synthetic):
    classes, lookup = synthetic
    ids = identify(FewShotSampler(classes, 5, 1, 1, True).sample(np.random.default_rng(2), 200).support_inputs, lookup)
    turns = ids[:, :, 2]  # [tasks, N]: support row j is label j
    assert set(np.unique(turns)) == {0, 1, 2, 3}
    assert np.mean([len(set(t)) > 1 for t in turns]) > 0.9
    assert abs(np.mean(turns == 0) - 0.25) < 0.05


def test_labels_are_permuted_across_tasks(synthetic):
    classes, lookup = synthetic
    # With N == number of classes every task holds every class: only the labels can differ.
    small = ClassImages(classes.images[:5], classes.names[:5], invert=True)
    ids = identify(FewShotSampler(small, 5, 1, 1, False).sample(np.random.default_rng(3), 400).support_inputs, lookup)
    label_of_class0 = np.argmax(ids[:, :, 0] == 0, axis=1)
    counts = np.bincount(label_of_class0, minlength=5)
    assert (counts > 40).all(), counts  # about 80 each
    assert len({tuple(t) for t in ids[:, :, 0]}) > 50


def test_classes_and_images_are_spread(synthetic):
    classes, lookup = synthetic
    ids = identify(FewShotSampler(classes, 5, 2, 2, True).sample(np.random.default_rng(4), 300).support_inputs, lookup)
    assert len(np.unique(ids[:, :, 0])) == CLASSES
    assert len(np.unique(ids[:, :, 1])) == PER_CLASS


def test_pixel_values(synthetic):
    classes, _ = synthetic
    plain = ClassImages(classes.images, classes.names, invert=False)
    batch_plain = FewShotSampler(plain, 5, 1, 1, False).sample(np.random.default_rng(5), 2)
    batch_inv = FewShotSampler(classes, 5, 1, 1, False).sample(np.random.default_rng(5), 2)
    # Exactly the original graph's float32 arithmetic: x / 255, then 1 - x.
    np.testing.assert_array_equal(batch_inv.support_inputs, np.float32(1) - batch_plain.support_inputs)
    values = np.arange(256, dtype=np.uint8)
    assert set(np.unique(batch_plain.support_inputs)) <= set(values.astype(np.float32) / np.float32(255))


def test_same_rng_same_batch(synthetic):
    sampler = FewShotSampler(synthetic[0], 5, 1, 1, True)
    a = sampler.sample(np.random.default_rng(7), 4)
    b = sampler.sample(np.random.default_rng(7), 4)
    c = sampler.sample(np.random.default_rng(8), 4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a.support_inputs, c.support_inputs)


def test_eval_pool_is_fixed(synthetic):
    sampler = FewShotSampler(synthetic[0], 5, 1, 3, True)
    pool = sampler.eval_pool()
    assert len(pool) == 600
    first = pool[0]
    assert first.support_inputs.shape == (1, 5, SIZE, SIZE, 1) and first.query_inputs.shape == (1, 15, SIZE, SIZE, 1)
    again = sampler.eval_pool()
    for i in (0, 17, 599, -1):
        assert all(np.array_equal(x, y) for x, y in zip(pool[i], again[i]))
    # Task i does not depend on the pool size, and batch() stacks single tasks.
    short = sampler.eval_pool(num_tasks=20)
    assert all(np.array_equal(x, y) for x, y in zip(pool[5], short[5]))
    several = pool.batch([3, 4, 5])
    assert all(np.array_equal(x[2:3], y) for x, y in zip(several, pool[5]))
    assert not np.array_equal(pool[0].support_inputs, pool[1].support_inputs)
    assert not np.array_equal(pool[0].support_inputs, sampler.eval_pool(seed=7)[0].support_inputs)
    with pytest.raises(IndexError):
        pool[600]
    assert sum(1 for _ in sampler.eval_pool(num_tasks=3)) == 3


def _pool_digest(pool, count=5):
    digest = hashlib.sha256()
    for i in range(count):
        for array in pool[i]:
            digest.update(array.tobytes())
    return digest.hexdigest()


def test_eval_pool_same_in_another_process(synthetic):
    here = _pool_digest(FewShotSampler(synthetic[0], 5, 1, 1, True).eval_pool())
    code = (
        "import numpy as np, hashlib\n"
        "from maml_tf.few_shot_data import ClassImages, FewShotSampler\n"
        f"images = np.random.default_rng(0).integers(0, 256, size=({CLASSES}, {PER_CLASS}, {SIZE}, {SIZE}, 1), dtype=np.uint8)\n"
        "pool = FewShotSampler(ClassImages(images, (), True), 5, 1, 1, True).eval_pool()\n"
        "d = hashlib.sha256()\n"
        "[d.update(a.tobytes()) for i in range(5) for a in pool[i]]\n"
        "print(d.hexdigest())\n")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there


@pytest.mark.parametrize("args,message", [
    ((31, 1, 1, False), "num_classes=31 \\(--num_classes\\) is more than the 30 classes"),
    ((5, 6, 7, False), "6 \\+ 7 is more than the 12 images per class \\(check --update_batch_size\\)"),
    ((5, 0, 1, False), "must be >= 1"),
    ((0, 1, 1, False), "must be >= 1"),
])
def test_bad_sampler_arguments(synthetic, args, message):
    with pytest.raises(ValueError, match=message):
        FewShotSampler(synthetic[0], *args)


def test_rotation_needs_square_images():
    images = np.zeros((5, 4, 6, 8, 1), np.uint8)
    with pytest.raises(ValueError, match="square"):
        FewShotSampler(ClassImages(images, ()), 5, 1, 1, rotate=True)
    FewShotSampler(ClassImages(images, ()), 5, 1, 1, rotate=False).sample(np.random.default_rng(0), 2)
