"""Few-shot image classification data: in-memory datasets and the task sampler.

Every image is decoded once at load time and kept as uint8; only a sampled meta-batch is
converted to float32. Splits and task structure follow the original `data_generator.py`:

- Omniglot: the 1623 characters, listed sorted, shuffled with Python's `random.seed(1)`;
  1100 train, next 100 val, last 423 test. Pixels x/255 inverted to 1 - x/255 (stroke = 1);
  every class of a task gets its own rotation by a multiple of 90 degrees.
- MiniImagenet: Ravi & Larochelle's 64/16/20 classes x 600, 84x84 RGB, x/255, no rotation.
  JPEGs are decoded by TensorFlow's `decode_jpeg` with its default settings, the original's
  decoder (its default DCT, libjpeg's fast integer one, gives pixels up to 3 levels away from
  Pillow's accurate DCT on most pixels).
- Tasks: N distinct classes in random order (the order is the label permutation), support
  and query images drawn per class without replacement, so they are disjoint.
"""
import io
import os
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from maml_tf.episodes import EpisodeBatch

SPLITS = ("train", "val", "test")
OMNIGLOT_FOLDER = "omniglot_resized"
OMNIGLOT_SPLIT_SIZES = {"train": 1100, "val": 100, "test": 423}
OMNIGLOT_IMAGES_PER_CLASS = 20
OMNIGLOT_SHAPE = (28, 28, 1)
MINIIMAGENET_FOLDER = "miniImagenet"
MINIIMAGENET_SHAPE = (84, 84, 3)
_PREP_HINT = {
    OMNIGLOT_FOLDER: "python -m data_prep.omniglot --source_dir=DIR --output_dir=DATA",
    MINIIMAGENET_FOLDER: "python -m data_prep.miniimagenet --csv_dir=DIR --images_dir=DIR --output_dir=DATA",
}


class ClassImages(NamedTuple):
    """All images of one split, grouped by class."""

    images: np.ndarray  # uint8 [classes, images_per_class, H, W, C], as stored on disk
    names: tuple  # class names: 'alphabet/character' (Omniglot) or the wnid (MiniImagenet)
    invert: bool = False  # Omniglot: the model sees 1 - x/255, so strokes are 1
    # Per class, the image files in the order of `images`' second axis, relative to the dataset
    # folder (omniglot_resized/ or miniImagenet/); empty for images not loaded from files.
    files: tuple = ()


def load_omniglot(data_dir, splits=SPLITS):
    """{split: ClassImages} from DATA/omniglot_resized (or that folder itself)."""
    _check_splits(splits)
    root = _dataset_root(data_dir, OMNIGLOT_FOLDER)
    split_names = omniglot_splits(omniglot_characters(root))
    result = {}
    for split in splits:
        images, files = _load_classes(root, split_names[split], "L", OMNIGLOT_SHAPE, _PREP_HINT[OMNIGLOT_FOLDER],
                                      OMNIGLOT_IMAGES_PER_CLASS)
        result[split] = ClassImages(images, tuple(split_names[split]), invert=True, files=files)
    return result


def omniglot_characters(root):
    """The 'alphabet/character' folders of an Omniglot dataset folder, sorted; a ValueError
    unless there are all of them (the original's split is of the full list)."""
    names = sorted(f"{a.name}/{c.name}" for a in root.iterdir() if a.is_dir()
                   for c in a.iterdir() if c.is_dir())
    expected = sum(OMNIGLOT_SPLIT_SIZES.values())
    if len(names) != expected:
        raise ValueError(f"{root} holds {len(names)} character folders, expected {expected}; "
                         f"rerun {_PREP_HINT[OMNIGLOT_FOLDER]}")
    return names


def omniglot_splits(names):
    """The original's split of the character list: seeded shuffle, then 1100 / 100 / rest.

    `names` are sorted first (the original shuffled an unsorted os.listdir, so its split
    depended on the file system); a private `random.Random(1)` gives the same permutation
    as the original's `random.seed(1); random.shuffle(...)`.
    """
    shuffled = sorted(names)
    random.Random(1).shuffle(shuffled)
    n_train, n_val = OMNIGLOT_SPLIT_SIZES["train"], OMNIGLOT_SPLIT_SIZES["val"]
    return {"train": shuffled[:n_train], "val": shuffled[n_train:n_train + n_val],
            "test": shuffled[n_train + n_val:]}


def load_miniimagenet(data_dir, splits=SPLITS):
    """{split: ClassImages} from DATA/miniImagenet/<split>/<wnid>/*.jpg (or that folder).

    Holds 1.3 GB for all three splits; pass `splits` to load only what a run needs.
    """
    _check_splits(splits)
    root = _dataset_root(data_dir, MINIIMAGENET_FOLDER)
    import tensorflow  # noqa: F401  (read_image decodes JPEG with it; imported before the worker threads)

    result = {}
    for split in splits:
        folder = root / split
        names = sorted(d.name for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
        if not names:
            raise ValueError(f"{folder} has no class folders; rerun {_PREP_HINT[MINIIMAGENET_FOLDER]}")
        images, files = _load_classes(folder, names, "RGB", MINIIMAGENET_SHAPE, _PREP_HINT[MINIIMAGENET_FOLDER],
                                      prefix=split + "/")
        result[split] = ClassImages(images, tuple(names), files=files)
    return result


def _check_splits(splits):
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or isinstance(splits, str):
        raise ValueError(f"splits must be a sequence drawn from {SPLITS}, got {splits!r}")


def _dataset_root(data_dir, folder_name):
    data_dir = Path(data_dir).expanduser()
    root = data_dir if data_dir.name == folder_name else data_dir / folder_name
    if not root.is_dir():
        raise FileNotFoundError(f"no {folder_name} folder at {root}; prepare it with "
                                f"{_PREP_HINT[folder_name]} and pass DATA as the data folder")
    return root


def read_image(path, mode):
    """uint8 pixels [H, W, C] of one image file, decoded as the original did.

    JPEG (MiniImagenet) goes through TensorFlow's `decode_jpeg` with default settings, as the
    original's input pipeline did; anything else (Omniglot's PNGs) through Pillow, converted to
    `mode` ('L' or 'RGB'), which for those lossless files gives the same pixels. A file that
    cannot be decoded raises OSError.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data[:3] == b"\xff\xd8\xff":
        import tensorflow as tf

        try:
            return tf.io.decode_jpeg(data, channels={"L": 1, "RGB": 3}[mode]).numpy()
        except tf.errors.OpError as e:
            raise OSError(e.message.splitlines()[0] if e.message else type(e).__name__) from None
    with Image.open(io.BytesIO(data)) as im:
        pixels = np.asarray(im.convert(mode))
    return pixels.reshape(pixels.shape[:2] + (-1,))


def _load_classes(root, names, mode, shape, hint, per_class=None, prefix=""):
    """Decode the images of each class folder into one uint8 array [classes, images, *shape];
    returns it and, per class, the files as `prefix + name/file`."""
    files = [sorted(f for f in os.listdir(root / n) if not f.startswith(".")) for n in names]
    per_class = per_class or len(files[0])
    for name, fs in zip(names, files):
        if len(fs) != per_class or not fs:
            raise ValueError(f"{root / name} has {len(fs)} images, expected {per_class or 'some'} "
                             f"like the other classes; rerun {hint}")
    images = np.empty((len(names), per_class) + tuple(shape), np.uint8)

    def decode(c):
        for i, f in enumerate(files[c]):
            path = root / names[c] / f
            try:
                pixels = read_image(path, mode)
            except OSError as e:
                raise ValueError(f"cannot read image {path} ({e}); rerun {hint}") from e
            if pixels.shape[:2] != shape[:2]:
                raise ValueError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, expected "
                                 f"{shape[1]}x{shape[0]}: was it made by data_prep?")
            images[c, i] = pixels.reshape(shape)

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(len(names))))  # list() re-raises the first error
    return images, tuple(tuple(f"{prefix}{n}/{f}" for f in fs) for n, fs in zip(names, files))


class FewShotSampler:
    """Draws N-way tasks with K support and Q query images per class from one split."""

    def __init__(self, classes: ClassImages, num_classes, support_per_class, query_per_class, rotate):
        num_available, per_class, height, width = classes.images.shape[:4]
        if min(num_classes, support_per_class, query_per_class) < 1:
            raise ValueError(f"num_classes, support_per_class and query_per_class must be >= 1, got "
                             f"{num_classes}, {support_per_class}, {query_per_class}")
        if num_classes > num_available:
            raise ValueError(f"num_classes={num_classes} (--num_classes) is more than the "
                             f"{num_available} classes of this split")
        if support_per_class + query_per_class > per_class:
            raise ValueError(f"support_per_class + query_per_class = {support_per_class} + "
                             f"{query_per_class} is more than the {per_class} images per class "
                             f"(check --update_batch_size)")
        if rotate and height != width:
            raise ValueError(f"rotate needs square images, got {height}x{width}")
        self.classes = classes
        self.num_classes = num_classes
        self.support_per_class = support_per_class
        self.query_per_class = query_per_class
        self.rotate = rotate


    def sample(self, rng: np.random.Generator, num_tasks) -> EpisodeBatch:
        """`num_tasks` fresh tasks drawn with `rng`."""
        return self._build(*self._draw(rng, num_tasks))

    def eval_pool(self, num_tasks=600, seed=6) -> "EvalPool":
        """The original's fixed evaluation tasks: its `random.seed(6)` pool of 600 (see `EvalPool`)."""
        return EvalPool(self, num_tasks, seed)

    def _draw(self, rng, num_tasks):
        """Indices of a task batch: classes [T, N], images [T, N, K+Q], quarter turns [T, N]."""
        num_available, per_class = self.classes.images.shape[:2]
        n, size = self.num_classes, self.support_per_class + self.query_per_class
        keys = rng.random((num_tasks, num_available))
        chosen = np.argpartition(keys, n - 1, axis=1)[:, :n]
        # Order the N chosen classes by their random keys: a uniform random order, which is
        # the task's label permutation (class in slot j gets label j).
        chosen = np.take_along_axis(chosen, np.argsort(np.take_along_axis(keys, chosen, 1), 1), 1)
        images = np.argsort(rng.random((num_tasks, n, per_class)), axis=2)[:, :, :size]
        if self.rotate:
            turns = rng.integers(0, 4, size=(num_tasks, n))
        else:
            turns = np.zeros((num_tasks, n), np.int64)
        return chosen, images, turns

    def _build(self, chosen, images, turns) -> EpisodeBatch:
        # Gather sample-major, as the original laid tasks out: row k*N + j of a task is
        # image k of the class with label j.
        x = self.classes.images[chosen[:, None, :], images.transpose(0, 2, 1)]  # [T, K+Q, N, H, W, C]
        by_class = x.swapaxes(1, 2)  # a view: [T, N, K+Q, H, W, C]
        for k in (1, 2, 3):  # one rotation per (task, class), shared by all its images
            mask = turns == k
            if mask.any():
                by_class[mask] = np.rot90(by_class[mask], k, axes=(2, 3))
        num_tasks, n, k_support = x.shape[0], self.num_classes, self.support_per_class
        support = self._to_float(x[:, :k_support]).reshape((num_tasks, -1) + x.shape[3:])
        query = self._to_float(x[:, k_support:]).reshape((num_tasks, -1) + x.shape[3:])
        one_hot = np.eye(n, dtype=np.float32)
        support_labels = np.tile(one_hot, (num_tasks, k_support, 1))
        query_labels = np.tile(one_hot, (num_tasks, self.query_per_class, 1))
        return EpisodeBatch(support, support_labels, query, query_labels)

    def _to_float(self, pixels):
        return to_float(pixels, self.classes.invert)

    def _describe(self, chosen, images, turns):
        """The images of `_build`'s tasks, in its row order: per task a list of
        (set, label, quarter turns, file) with set 'support' or 'query' and the file relative
        to the dataset folder (see `maml_tf.episode_list`)."""
        files = self.classes.files
        if not files:
            raise ValueError("these class images were not loaded from files, so their tasks cannot be listed")
        tasks = []
        for t in range(chosen.shape[0]):
            rows = []
            for i in range(images.shape[2]):  # sample-major, as in _build
                kind = "support" if i < self.support_per_class else "query"
                rows.extend((kind, j, int(turns[t, j]), files[chosen[t, j]][images[t, j, i]])
                            for j in range(self.num_classes))
            tasks.append(rows)
        return tasks


def to_float(pixels, invert):
    """float32 model input of uint8 pixels: the original graph's operations, x / 255, then 1 - x
    for Omniglot (`invert`)."""
    x = pixels.astype(np.float32) / np.float32(255)
    return np.subtract(np.float32(1), x, out=x) if invert else x


class EvalPool(Sequence):
    """The original's fixed evaluation tasks (`original_pool_draws`: classes and images from
    Python's `random` seeded with `seed`, as its `make_data_tensor(train=False)`), drawn up
    front and built into images on demand: indexing gives a 1-task EpisodeBatch,
    `batch(indices)` several. The same in every process and run; its first tasks do not
    depend on its length."""

    def __init__(self, sampler: FewShotSampler, num_tasks, seed):
        self.sampler, self.num_tasks, self.seed = sampler, num_tasks, seed
        num_available, per_class = sampler.classes.images.shape[:2]
        self._chosen, self._images = original_pool_draws(
            num_available, per_class, sampler.num_classes, sampler.support_per_class + sampler.query_per_class,
            num_tasks, seed)
        self._quarter_turns = pool_quarter_turns(num_tasks, sampler.num_classes, sampler.rotate, seed)

    def __len__(self):
        return self.num_tasks

    def __getitem__(self, index) -> EpisodeBatch:
        if isinstance(index, slice):
            raise TypeError("use pool.batch(range(start, stop)) for several tasks")
        if index < 0:
            index += self.num_tasks
        return self.batch([index])

    def batch(self, indices) -> EpisodeBatch:
        return self.sampler._build(*self._draws(indices))

    def episodes(self, indices=None):
        """The images behind tasks `indices` (default: all), one list of (set, label, quarter
        turns, file) per task in the row order of `batch`; `maml_tf.episode_list` writes them."""
        return self.sampler._describe(*self._draws(range(self.num_tasks) if indices is None else indices))

    def _draws(self, indices):
        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < self.num_tasks:
                raise IndexError(f"task {i} is outside this pool of {self.num_tasks}")
        return self._chosen[indices], self._images[indices], self._quarter_turns[indices]


def pool_quarter_turns(num_tasks, num_classes, rotate, seed):
    """Quarter turns [tasks, N] of an evaluation pool (zeros unless `rotate`): the original
    rotated each class of a task by an unseeded `tf.multinomial`, which no seed reproduces;
    here task i's come from its own generator seeded with (seed, i), so a task's turns do not
    depend on the pool's length."""
    if not rotate:
        return np.zeros((num_tasks, num_classes), np.int64)
    return np.array([np.random.default_rng([seed, i]).integers(0, 4, size=num_classes)
                     for i in range(num_tasks)], np.int64).reshape(num_tasks, num_classes)


def original_pool_draws(num_available, per_class, num_classes, samples_per_class, num_tasks, seed):
    """(classes [tasks, N], images [tasks, N, samples_per_class]) of the original's evaluation
    pool: `random.seed(seed)` (main.py), then per task `random.sample(folders, N)`, a
    `random.shuffle` of them (the order is the label permutation) and, per class in label
    order, `random.sample(os.listdir(class), samples_per_class)` (data_generator.py's
    `make_data_tensor`, utils.py's `get_images`), the first K support, the rest query.

    `random.sample` picks positions from the population's length alone, so sampling
    positions in our listings (classes in split order, files sorted) replays the original's
    draws on a file system that lists sorted. These are Python 3's `random.sample`/`shuffle`
    (the authors' code ran on Python 2 or 3; Python 2's `sample` drew differently)."""
    stream = random.Random(seed)
    classes = np.empty((num_tasks, num_classes), np.int64)
    images = np.empty((num_tasks, num_classes, samples_per_class), np.int64)
    for t in range(num_tasks):
        chosen = stream.sample(range(num_available), num_classes)
        stream.shuffle(chosen)
        classes[t] = chosen
        for j in range(num_classes):
            images[t, j] = stream.sample(range(per_class), samples_per_class)
    return classes, images
