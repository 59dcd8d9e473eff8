"""Explicit test episodes: a plain-text list naming the image files of every task.

`maml_tf.main --train=False --test_tasks_file=FILE` evaluates exactly the tasks of FILE instead
of the fixed pool (the original's), and `--write_test_tasks=FILE` writes the tasks being evaluated in
this format, so that other code (for instance the authors' original) can be run on the same
episodes, and their episodes on ours.

Format: UTF-8 text, one record per line, fields separated by one TAB:

    # maml-tf episode list: miniimagenet, 5-way, 1 support + 1 query image per label
    task	set	label	rotation	path
    0	support	0	0	test/n01930112/n0193011200000517.jpg
    0	support	1	0	test/n03544143/n0354414300000030.jpg
    ...
    0	query	0	0	test/n01930112/n0193011200000102.jpg
    ...

- Lines starting with '#' are comments; blank lines are ignored. The first other line is the
  header, exactly `task<TAB>set<TAB>label<TAB>rotation<TAB>path`.
- Every further line is one image of one task:
  `task`: the task's identifier (written as 0, 1, 2, ...). A task's lines are consecutive;
  tasks are evaluated in the order of the file.
  `set`: `support` (the images adapted on) or `query` (the images scored after each step).
  `label`: the image's class within the task, 0..N-1.
  `rotation`: quarter turns counter-clockwise, as `np.rot90(image, rotation)`, 0..3. The
  original rotates all images of an Omniglot class in a task by the same random multiple of
  90 degrees and never rotates MiniImagenet images; a list may rotate any image.
  `path`: the image file, relative to the dataset folder (`omniglot_resized/` or
  `miniImagenet/` under the data folder, e.g. `Greek/character01/0394_01.png`,
  `test/n01930112/n0193011200000517.jpg`) or absolute. It may hold spaces, not TABs.
- Within a task, the support lines in file order are the rows of the support set and the query
  lines in file order those of the query set (rows are model inputs in that order; the loss and
  accuracy do not depend on it, batch norm uses the statistics of the whole set).
- A valid task has N labels 0..N-1 (N = --num_classes), exactly K support images of each label
  (K = --update_batch_size) and the same number (at least 1) of query images of each label, and
  no image twice (the same file and rotation). A test reads only images of the split it is on
  (`--test_set`: test, else val; Omniglot's by the original's split of the character folders).
- Lines end with LF or CRLF; a leading byte-order mark is skipped.
- Images: Omniglot 28x28 greyscale (Pillow mode '1' or 'L'), MiniImagenet 84x84 RGB, decoded
  and scaled as `maml_tf.few_shot_data` does (x / 255; Omniglot inverted to 1 - x / 255).

Every problem is reported as one line `FILE:LINE: what is wrong` (a ValueError, or a
FileNotFoundError for a missing file).
"""
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from maml_tf import few_shot_data
from maml_tf.episodes import EpisodeBatch
from report.files import atomic_write_text

HEADER = ("task", "set", "label", "rotation", "path")
SETS = ("support", "query")


class Dataset(NamedTuple):
    folder: str  # the dataset folder under the data folder
    shape: tuple  # H, W, C of every image
    modes: tuple  # Pillow modes accepted on disk
    mode: str  # decoded as (few_shot_data.read_image)
    invert: bool  # Omniglot: 1 - x / 255
    description: str  # for messages


DATASETS = {
    "omniglot": Dataset(few_shot_data.OMNIGLOT_FOLDER, few_shot_data.OMNIGLOT_SHAPE, ("1", "L"), "L", True,
                        "28x28 greyscale (mode 1 or L)"),
    "miniimagenet": Dataset(few_shot_data.MINIIMAGENET_FOLDER, few_shot_data.MINIIMAGENET_SHAPE, ("RGB",), "RGB",
                            False, "84x84 RGB"),
}


class EpisodeImage(NamedTuple):
    """One line of an episode list."""

    set: str  # 'support' or 'query'
    label: int
    rotation: int  # quarter turns counter-clockwise (np.rot90)
    path: str  # as written: relative to the dataset folder, or absolute
    line: int = 0  # line number in the file it was read from (0: not read from a file)


class Episode(NamedTuple):
    task: str  # the task's identifier in the file
    images: tuple  # its EpisodeImages, in file order


def write_episode_list(path, tasks, comment=None):
    """Write `tasks` (each a sequence of (set, label, rotation, path) rows, e.g. `EvalPool.episodes()`
    or `EpisodeList.episodes()`) as an episode list, numbering the tasks 0, 1, ...; `comment`
    lines go first, prefixed with '# '. Written to a temporary file renamed at the end."""
    path = os.fspath(path)
    lines = [f"# {line}\n" for line in (comment.splitlines() if comment else [])]
    lines.append("\t".join(HEADER) + "\n")
    for t, rows in enumerate(tasks):
        for kind, label, rotation, image_path, *_ in rows:
            if kind not in SETS:
                raise ValueError(f"task {t}: set must be one of {SETS}, got {kind!r}")
            image_path = os.fspath(image_path)
            if not image_path or "\t" in image_path or len((image_path + "x").splitlines()) != 1:
                raise ValueError(f"task {t}: image path {image_path!r} is empty or holds a TAB or line break")
            try:
                image_path.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"task {t}: image path {image_path!r} is not UTF-8 text (rename the file)") from None
            lines.append(f"{t}\t{kind}\t{int(label)}\t{int(rotation)}\t{image_path}\n")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write the episode list {path}: no folder {directory}")
    atomic_write_text(path, "".join(lines))


def read_episode_list(path):
    """The Episodes of an episode list, checked for format only (see `check_episodes`)."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file (an episode list is a text file)")
    try:
        with open(path, encoding="utf-8-sig") as f:  # (a byte-order mark, as some editors write, is skipped)
            text = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"episode list {path} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read the episode list ({e})") from None
    header_line, episodes, finished = None, [], set()
    for number, raw in enumerate(text.split("\n"), start=1):  # (not splitlines: paths may hold \x0c, \x85, ...)
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        fields = line.split("\t")
        if header_line is None:
            if tuple(f.strip() for f in fields) != HEADER:
                raise ValueError(f"{where}: expected the header line {'<TAB>'.join(HEADER)!r}, got {line[:80]!r}")
            header_line = number
            continue
        if len(fields) != len(HEADER):
            raise ValueError(f"{where}: expected {len(HEADER)} TAB-separated fields ({', '.join(HEADER)}), "
                             f"got {len(fields)}")
        task, kind, label, rotation, image_path = fields
        task = task.strip()
        if not task:
            raise ValueError(f"{where}: empty task identifier")
        kind = kind.strip()
        if kind not in SETS:
            raise ValueError(f"{where}: set must be 'support' or 'query', got {kind!r}")
        label = _integer(label, where, "label")
        if label < 0:
            raise ValueError(f"{where}: label must be >= 0, got {label}")
        rotation = _integer(rotation, where, "rotation")
        if rotation not in (0, 1, 2, 3):
            raise ValueError(f"{where}: rotation must be 0, 1, 2 or 3 quarter turns, got {rotation}")
        if not image_path.strip():
            raise ValueError(f"{where}: empty image path")
        image = EpisodeImage(kind, label, rotation, image_path, number)
        if episodes and episodes[-1][0] == task:
            episodes[-1][1].append(image)
            continue
        if task in finished:
            raise ValueError(f"{where}: task {task!r} continues after task {episodes[-1][0]!r} began "
                             f"(the lines of a task must be consecutive)")
        if episodes:
            finished.add(episodes[-1][0])
        episodes.append((task, [image]))
    if header_line is None:
        raise ValueError(f"{path}:1: no header line {'<TAB>'.join(HEADER)!r} (is this an episode list?)")
    if not episodes:
        raise ValueError(f"{path}:{header_line}: no task lines after the header")
    return [Episode(task, tuple(images)) for task, images in episodes]


def _integer(text, where, name):
    if not re.fullmatch(r"-?[0-9]+", text.strip()):  # (int() also takes '+1', '0_1' and other scripts' digits)
        raise ValueError(f"{where}: {name} must be an integer, got {text!r}")
    return int(text.strip())


def check_episodes(episodes, num_classes, support_per_class, path="episode list"):
    """Raise a one-line ValueError unless every task has labels 0..num_classes-1, exactly
    `support_per_class` support images of each and the same number (>= 1) of query images of each."""
    for task, images in episodes:
        first = images[0].line
        counts = {kind: [[] for _ in range(num_classes)] for kind in SETS}
        for image in images:
            if image.label >= num_classes:
                raise ValueError(f"{path}:{image.line}: label {image.label} is outside 0..{num_classes - 1} "
                                 f"({num_classes}-way tasks, --num_classes)")
            counts[image.set][image.label].append(image.line)
        for label in range(num_classes):
            if not counts["support"][label] and not counts["query"][label]:
                raise ValueError(f"{path}:{first}: task {task!r} has no images of label {label} "
                                 f"({num_classes}-way tasks need labels 0..{num_classes - 1})")
        for label, lines in enumerate(counts["support"]):
            if len(lines) != support_per_class:
                where = lines[support_per_class] if len(lines) > support_per_class else first
                raise ValueError(f"{path}:{where}: task {task!r} has {len(lines)} support images of label {label}, "
                                 f"expected K={support_per_class} (--update_batch_size)")
        query = [len(lines) for lines in counts["query"]]
        if max(query) == 0:
            raise ValueError(f"{path}:{first}: task {task!r} has no query images")
        if min(query) != max(query):
            label = int(np.argmin(query))
            raise ValueError(f"{path}:{first}: task {task!r} has {query[label]} query images of label {label} "
                             f"but {max(query)} of label {int(np.argmax(query))} (every label needs the same number)")


class EpisodeList(Sequence):
    """The tasks of an episode list with their images decoded, as `EvalPool` offers the fixed
    pool: indexing gives a 1-task EpisodeBatch (built on demand), `episodes()` the rows."""

    def __init__(self, episodes, pixels, invert, num_classes):
        self._episodes, self._pixels, self._invert, self._n = episodes, pixels, invert, num_classes

    def __len__(self):
        return len(self._episodes)

    def __getitem__(self, index) -> EpisodeBatch:
        if isinstance(index, slice):
            raise TypeError("an EpisodeList is indexed one task at a time")
        images = self._episodes[index].images
        one_hot = np.eye(self._n, dtype=np.float32)
        arrays = []
        for kind in SETS:
            rows = [im for im in images if im.set == kind]
            x = np.stack([np.rot90(self._pixels[im.path], im.rotation) for im in rows])
            arrays += [few_shot_data.to_float(x, self._invert)[None], one_hot[[im.label for im in rows]][None]]
        return EpisodeBatch(*arrays)

    def episodes(self, indices=None):
        """(set, label, rotation, path) rows per task, as read."""
        chosen = range(len(self)) if indices is None else indices
        return [[im[:4] for im in self._episodes[i].images] for i in chosen]


def dataset_root(data_dir, datasource):
    """The folder relative paths are resolved against: DATA/<dataset folder>, or DATA itself if
    it is that folder (as the loaders accept)."""
    folder = DATASETS[datasource].folder
    data_dir = Path(data_dir).expanduser()
    return data_dir if data_dir.name == folder else data_dir / folder


def load_episode_list(path, data_dir, datasource, num_classes, support_per_class, split=None) -> EpisodeList:
    """Read, check and decode an episode list for `datasource` ('omniglot' or 'miniimagenet');
    relative image paths are resolved against `dataset_root(data_dir, datasource)`. An image
    listed twice in a task (the same file and rotation, e.g. in its support and query sets) is
    an error; with `split` ('train', 'val' or 'test'), so is an image outside that split of the
    dataset folder (a test labelled with one split must not score another's images)."""
    if datasource not in DATASETS:
        raise ValueError(f"episode lists hold images: datasource must be one of {sorted(DATASETS)}, "
                         f"got {datasource!r}")
    spec = DATASETS[datasource]
    path = os.fspath(path)
    episodes = read_episode_list(path)
    check_episodes(episodes, num_classes, support_per_class, path)
    root = dataset_root(data_dir, datasource)
    _check_no_repeats(episodes, root, path)
    first_line = {}
    for _, images in episodes:
        for image in images:
            first_line.setdefault(image.path, image.line)
    if split is not None:
        _check_split(first_line, root, datasource, split, path)

    def decode(item):
        image_path, line = item
        file = _resolve(root, image_path)
        where = f"{path}:{line}"
        if not file.is_file():
            raise FileNotFoundError(f"{where}: image {image_path} not found (looked for {file})")
        try:
            with Image.open(file) as im:
                size, mode = im.size, im.mode
            pixels = few_shot_data.read_image(file, spec.mode)
        except (OSError, Image.DecompressionBombError) as e:
            raise ValueError(f"{where}: cannot read image {file} ({e})") from None
        if mode not in spec.modes or size != (spec.shape[1], spec.shape[0]):
            raise ValueError(f"{where}: {image_path} is {size[0]}x{size[1]} mode {mode}, expected {spec.description} "
                             f"for {datasource}")
        return image_path, pixels.reshape(spec.shape)

    if spec.mode == "RGB":
        import tensorflow  # noqa: F401  (read_image decodes JPEG with it; imported before the threads)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        pixels = dict(pool.map(decode, first_line.items()))  # dict() re-raises the first error
    return EpisodeList(episodes, pixels, spec.invert, num_classes)


def _check_no_repeats(episodes, root, path):
    """A ValueError naming both lines if a task lists one image (file and rotation) twice."""
    for task, images in episodes:
        seen = {}
        for image in images:
            key = (os.path.realpath(_resolve(root, image.path)), image.rotation)
            if key in seen:
                raise ValueError(f"{path}:{image.line}: task {task!r} lists {image.path} (rotation {image.rotation}) "
                                 f"again (line {seen[key]}): a task's images must differ")
            seen[key] = image.line


def _check_split(first_line, root, datasource, split, path):
    """A ValueError naming the first listed image (of {image path: line}) that is in another
    split than `split`, or outside the dataset folder `root` (missing ones are left to decoding)."""
    split_of = _split_checker(root, datasource)
    for image_path, line in first_line.items():
        file = _resolve(root, image_path)
        found = split_of(file) if file.is_file() else split
        if found != split:
            where = f"outside {root}" if found is None else f"in the {found} split"
            raise ValueError(f"{path}:{line}: {image_path} is {where}; this test is on the {split} split "
                             f"(--test_set): list that split's images")


def _resolve(root, image_path):
    """An image path of a list as a file: absolute, or under the dataset folder `root`."""
    file = Path(image_path).expanduser()
    return file if file.is_absolute() else root / file


def _split_checker(root, datasource):
    """A function file -> the split ('train', 'val', 'test') of the dataset folder `root` it lies
    in, or None outside it: MiniImagenet's by its `<split>/` folder, Omniglot's by its character's
    place in the original's split of all the character folders (`few_shot_data.omniglot_splits`;
    a ValueError if the folder or some characters are missing). A path is inside `root` as
    written or with links resolved (a symlinked class folder is inside)."""
    if not Path(root).is_dir():
        raise ValueError(f"no dataset folder {root} (--data_dir): cannot tell the split of the listed images")
    if datasource == "omniglot":
        names = few_shot_data.omniglot_characters(Path(root))
        of_class = {name: s for s, members in few_shot_data.omniglot_splits(names).items() for name in members}
    else:
        of_class = None

    def relative_parts(file):
        for base, path in ((os.path.abspath(root), os.path.abspath(file)),
                           (os.path.realpath(root), os.path.realpath(file))):
            if os.path.commonpath([base, path]) == base:
                return Path(os.path.relpath(path, base)).parts
        return None

    def split_of(file):
        parts = relative_parts(file)
        if parts is None:
            return None
        if of_class is None:
            return parts[0] if len(parts) > 1 and parts[0] in few_shot_data.SPLITS else None
        return of_class.get("/".join(parts[:2])) if len(parts) > 2 else None
    return split_of
