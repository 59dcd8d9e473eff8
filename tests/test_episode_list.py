"""Explicit episode lists (maml_tf.episode_list) and main.py's --test_tasks_file / --write_test_tasks."""
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from PIL import Image

from maml_tf import episode_list, few_shot_data, main  # noqa: F401  (main defines the flags)
from maml_tf.episode_list import EpisodeImage, load_episode_list, read_episode_list, write_episode_list
from maml_tf.few_shot_data import ClassImages, FewShotSampler

HEADER = "task\tset\tlabel\trotation\tpath\n"


def _omniglot_folder(root, classes=7, per_class=4, seed=0):
    """DATA/omniglot_resized/<alphabet>/<character>/*.png: random binary 28x28 drawings (mode '1'),
    and their ClassImages as load_omniglot would hold them."""
    rng = np.random.default_rng(seed)
    names, files = [], []
    for c in range(classes):
        name = f"Alphabet{c % 2}/character{c:02d}"
        (root / "omniglot_resized" / name).mkdir(parents=True)
        names.append(name)
        files.append(tuple(f"{name}/{c:02d}_{i:02d}.png" for i in range(per_class)))
        for f in files[-1]:
            Image.fromarray(rng.random((28, 28)) < 0.5).save(root / "omniglot_resized" / f)
    images = np.stack([[few_shot_data.read_image(root / "omniglot_resized" / f, "L") for f in fs] for fs in files])
    return ClassImages(images, tuple(names), invert=True, files=tuple(files))


def _mini_folder(root, classes=6, per_class=3, split="test", seed=0):
    """DATA/miniImagenet/<split>/<wnid>/*.jpg: smooth random 84x84 RGB JPEGs."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / "miniImagenet" / split / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
            small.resize((84, 84), Image.Resampling.BICUBIC).save(folder / f"n{c:08d}{i:08d}.jpg", format="JPEG")
    return root


def _task(n=5, k=1, q=1, rotation=0, path=lambda label, i: f"c{label}/{i}.png"):
    rows = [("support", j, rotation, path(j, i)) for i in range(k) for j in range(n)]
    return rows + [("query", j, rotation, path(j, k + i)) for i in range(q) for j in range(n)]


# ---------------------------------------------------------------- the format


def test_write_then_read_gives_the_same_rows(tmp_path):
    tasks = [_task(), _task(n=3, k=2, q=3, rotation=2, path=lambda j, i: f"/abs/dir with space/{j}-{i}.png")]
    path = tmp_path / "tasks.tsv"
    write_episode_list(path, tasks, comment="two tasks\nsecond comment line")
    text = path.read_text()
    assert text.startswith("# two tasks\n# second comment line\n" + HEADER)
    assert text.splitlines()[3] == "0\tsupport\t0\t0\tc0/0.png"
    assert not os.path.exists(str(path) + ".tmp")
    episodes = read_episode_list(path)
    assert [e.task for e in episodes] == ["0", "1"]
    assert [[im[:4] for im in e.images] for e in episodes] == [[tuple(r) for r in t] for t in tasks]
    assert episodes[0].images[0] == EpisodeImage("support", 0, 0, "c0/0.png", 4)  # with its line number
    # Rewriting what was read gives the same file.
    write_episode_list(tmp_path / "again.tsv", [e.images for e in episodes], comment="two tasks\nsecond comment line")
    assert (tmp_path / "again.tsv").read_text() == text


def test_comments_blank_lines_and_any_task_names(tmp_path):
    path = tmp_path / "tasks.tsv"
    path.write_text("# a comment\n\n" + HEADER + "# between\nfirst\tsupport\t1\t3\ta.png\n\n"
                    "first\tquery\t0\t0\tb.png\nsecond\tsupport\t0\t1\tc.png\r\n")
    episodes = read_episode_list(path)
    assert [(e.task, len(e.images)) for e in episodes] == [("first", 2), ("second", 1)]
    assert episodes[0].images[0] == EpisodeImage("support", 1, 3, "a.png", 5)
    assert episodes[1].images[0].path == "c.png"  # a CRLF line ending is not part of the path


def test_writer_refuses_bad_rows(tmp_path):
    with pytest.raises(ValueError, match="set must be one of"):
        write_episode_list(tmp_path / "t.tsv", [[("train", 0, 0, "a.png")]])
    with pytest.raises(ValueError, match="TAB"):
        write_episode_list(tmp_path / "t.tsv", [[("query", 0, 0, "a\tb.png")]])
    with pytest.raises(FileNotFoundError, match="no folder"):
        write_episode_list(tmp_path / "missing" / "t.tsv", [_task()])
    for breaking in ("a\x0cb.png", "a\u2028b.png", "a\x85b.png"):  # line breaks to str.splitlines
        with pytest.raises(ValueError, match="TAB or line break"):
            write_episode_list(tmp_path / "t.tsv", [[("query", 0, 0, breaking)]])
    with pytest.raises(ValueError, match="is not UTF-8 text"):  # a file name os.listdir gave as surrogates
        write_episode_list(tmp_path / "t.tsv", [[("query", 0, 0, "caf\udce9.png")]])
    assert not any(tmp_path.iterdir())


def test_reading_takes_a_bom_and_comments_with_any_characters_and_refuses_loose_integers(tmp_path):
    """A byte-order mark (some editors write one) is skipped; only LF / CRLF end lines, so a
    comment holding \x85 or U+2028 numbers no line wrongly; labels and rotations are plain
    ASCII integers (int() would take '+1', '0_1' or other scripts' digits); a folder or a device
    is not an episode list."""
    path = tmp_path / "t.tsv"
    path.write_text("\ufeff# a comment \x85 with U+2028 \u2028 inside\n" + HEADER + ROW, encoding="utf-8")
    assert read_episode_list(path)[0].images[0].line == 3
    for bad in ("+1", "0_1", "\u0661"):
        path.write_text(HEADER + f"0\tsupport\t{bad}\t0\ta.png\n", encoding="utf-8")
        with pytest.raises(ValueError, match=":2: label must be an integer"):
            read_episode_list(path)
    with pytest.raises(ValueError, match="not a regular file"):
        read_episode_list("/dev/zero")


ROW = "0\tsupport\t0\t0\ta.png\n"
FORMAT_ERRORS = [
    ("# only a comment\n", 1, "no header line"),
    ("task set label rotation path\n" + ROW, 1, "expected the header line"),
    (HEADER + "0\tsupport\t0\t0\n", 2, "expected 5 TAB-separated fields .*got 4"),
    (HEADER + " \tsupport\t0\t0\ta.png\n", 2, "empty task identifier"),
    (HEADER + "0\ttrain\t0\t0\ta.png\n", 2, "set must be 'support' or 'query', got 'train'"),
    (HEADER + "0\tsupport\tone\t0\ta.png\n", 2, "label must be an integer, got 'one'"),
    (HEADER + "0\tsupport\t-1\t0\ta.png\n", 2, "label must be >= 0, got -1"),
    (HEADER + "# rotations are quarter turns\n0\tsupport\t0\t90\ta.png\n", 3, "rotation must be 0, 1, 2 or 3"),
    (HEADER + "0\tsupport\t0\tx\ta.png\n", 2, "rotation must be an integer"),
    (HEADER + "0\tsupport\t0\t0\t \n", 2, "empty image path"),
    (HEADER + ROW + "1\tsupport\t0\t0\tb.png\n" + ROW, 4, "task '0' continues after task '1' began"),
    ("# nothing\n" + HEADER + "\n", 2, "no task lines after the header"),
]


@pytest.mark.parametrize("text,line,message", FORMAT_ERRORS)
def test_format_errors_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "tasks.tsv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:{line}: {message}") as error:
        read_episode_list(path)
    assert "\n" not in str(error.value)


def _lines(tasks):
    return HEADER + "".join(f"{t}\t{s}\t{label}\t{r}\t{p}\n" for t, rows in enumerate(tasks) for s, label, r, p in rows)


STRUCTURE_ERRORS = [
    # (rows of a 5-way 1-shot task, index of the row the error names (None: the task's first), message)
    (_task()[:4] + [("support", 5, 0, "x.png")] + _task()[5:], 4,
     "label 5 is outside 0..4 \\(5-way tasks, --num_classes\\)"),
    ([r for r in _task() if r[1] != 3], None, "task '1' has no images of label 3 \\(5-way tasks need labels 0..4\\)"),
    ([r for r in _task() if not (r[0] == "support" and r[1] == 2)], None,
     "task '1' has 0 support images of label 2, expected K=1 \\(--update_batch_size\\)"),
    (_task() + [("support", 1, 0, "extra.png")], 10, "task '1' has 2 support images of label 1, expected K=1"),
    ([r for r in _task() if r[0] == "support"], None, "task '1' has no query images"),
    (_task(q=2)[:-1], None, "task '1' has 1 query images of label 4 but 2 of label 0 \\(every label needs the same"),
]


@pytest.mark.parametrize("rows,index,message", STRUCTURE_ERRORS)
def test_task_structure_errors_name_file_and_line(tmp_path, rows, index, message):
    path = tmp_path / "tasks.tsv"
    path.write_text(_lines([_task(), rows]))  # a valid task '0' on lines 2-11, then task '1' from line 12
    line = 12 + (index or 0)
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:{line}: {message}") as error:
        episode_list.check_episodes(read_episode_list(path), 5, 1, str(path))
    assert "\n" not in str(error.value)


def test_valid_structures_pass(tmp_path):
    path = tmp_path / "tasks.tsv"
    # labels interleaved in any order, several query images per label, K = 2
    rows = _task(n=3, k=2, q=4)
    path.write_text(_lines([rows, rows[::-1]]))
    episode_list.check_episodes(read_episode_list(path), 3, 2, str(path))


# ---------------------------------------------------------------- images


def test_loaded_tasks_are_the_listed_images(tmp_path):
    """Rows keep the file's order; rotation, label one-hot and the float conversion (Omniglot
    inverted) are the sampler's."""
    classes = _omniglot_folder(tmp_path)
    f = classes.files
    tasks = [[("support", 1, 0, f[0][0]), ("support", 0, 3, f[1][0]), ("query", 0, 3, f[1][1]),
              ("query", 1, 0, f[0][1]), ("query", 1, 0, f[0][2]), ("query", 0, 2, f[1][2])]]
    path = tmp_path / "tasks.tsv"
    write_episode_list(path, tasks)
    loaded = load_episode_list(path, tmp_path, "omniglot", 2, 1)
    assert len(loaded) == 1 and loaded.episodes() == tasks
    batch = loaded[0]
    assert batch.support_inputs.shape == (1, 2, 28, 28, 1) and batch.query_inputs.shape == (1, 4, 28, 28, 1)
    assert all(x.dtype == np.float32 for x in batch)
    np.testing.assert_array_equal(batch.support_labels[0], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(batch.query_labels[0].argmax(-1), [0, 1, 1, 0])
    expected = few_shot_data.to_float(np.rot90(classes.images[1, 0], 3), invert=True)
    np.testing.assert_array_equal(batch.support_inputs[0, 1], expected)
    np.testing.assert_array_equal(batch.query_inputs[0, 3], 1 - classes.images[1, 2][::-1, ::-1] / np.float32(255))
    # the data folder may also be the dataset folder itself; absolute paths are used as they are
    absolute = [[(s, label, r, str(tmp_path / "omniglot_resized" / p)) for s, label, r, p in tasks[0]]]
    write_episode_list(path, absolute)
    again = load_episode_list(path, tmp_path / "omniglot_resized", "omniglot", 2, 1)[0]
    assert all(np.array_equal(a, b) for a, b in zip(again, batch))


@pytest.mark.parametrize("datasource", ["omniglot", "miniimagenet"])
def test_seeded_pool_round_trip(tmp_path, datasource):
    """The sampler names the files of the tasks it draws: listing the seeded pool and loading
    the list gives exactly the pool's arrays, task by task."""
    if datasource == "omniglot":
        classes, rotate, k, q = _omniglot_folder(tmp_path), True, 1, 2
    else:
        classes, rotate, k, q = few_shot_data.load_miniimagenet(_mini_folder(tmp_path), ("test",))["test"], False, 1, 1
    pool = FewShotSampler(classes, 5, k, q, rotate=rotate).eval_pool(12, seed=6)
    episodes = pool.episodes()
    assert len(episodes) == 12 and all(len(rows) == 5 * (k + q) for rows in episodes)
    if rotate:
        assert {r[2] for rows in episodes for r in rows} == {0, 1, 2, 3}
    path = tmp_path / "pool.tsv"
    write_episode_list(path, episodes)
    loaded = load_episode_list(path, tmp_path, datasource, 5, k)
    assert len(loaded) == 12 and loaded.episodes() == [[tuple(r) for r in rows] for rows in episodes]
    for i in range(12):
        for ours, theirs in zip(loaded[i], pool[i]):
            np.testing.assert_array_equal(ours, theirs)
    assert pool.episodes([3]) == episodes[3:4]


def test_class_files_do_not_change_the_drawn_tasks(tmp_path):
    """Adding file names to ClassImages leaves the tasks the sampler draws unchanged."""
    classes = _omniglot_folder(tmp_path)
    bare = ClassImages(classes.images, classes.names, True)
    for a, b in zip(FewShotSampler(classes, 5, 1, 1, True).sample(np.random.default_rng(3), 4),
                    FewShotSampler(bare, 5, 1, 1, True).sample(np.random.default_rng(3), 4)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="not loaded from files"):
        FewShotSampler(bare, 5, 1, 1, True).eval_pool(2).episodes()


def test_an_image_twice_in_a_task_or_from_another_split_is_refused(tmp_path):
    """The same file and rotation twice in a task (its query image also a support image, spelled
    `./c0/0.png` or not) would score an image the model adapted on: refused, naming both lines.
    With a split (main passes the one --test_set names), an image of another split, or outside
    the dataset folder, is refused: the result is labelled with that split."""
    _mini_folder(tmp_path / "data", classes=2, per_class=2, split="test")
    _mini_folder(tmp_path / "data", classes=2, per_class=2, split="train", seed=1)
    test = lambda c, i: f"test/n{c:08d}/n{c:08d}{i:08d}.jpg"  # noqa: E731
    path = tmp_path / "t.tsv"
    rows = [("support", 0, 0, test(0, 0)), ("support", 1, 0, test(1, 0)),
            ("query", 0, 0, "./" + test(0, 0)), ("query", 1, 0, test(1, 1))]
    write_episode_list(path, [rows])
    with pytest.raises(ValueError, match=rf"{path}:4: task '0' lists ./{test(0, 0)} \(rotation 0\) again \(line 2\)"):
        load_episode_list(path, tmp_path / "data", "miniimagenet", 2, 1)
    rows[2] = ("query", 0, 0, test(0, 1))
    write_episode_list(path, [rows])
    assert len(load_episode_list(path, tmp_path / "data", "miniimagenet", 2, 1, split="test")) == 1
    with pytest.raises(ValueError, match=rf"{path}:2: {test(0, 0)} is in the test split; this test is on the val split"):
        load_episode_list(path, tmp_path / "data", "miniimagenet", 2, 1, split="val")
    rows[3] = ("query", 1, 0, str(tmp_path / "data" / "miniImagenet" / "train" / "n00000001" / "n0000000100000001.jpg"))
    write_episode_list(path, [rows])
    with pytest.raises(ValueError, match=r":5: .*n0000000100000001.jpg is in the train split; this test is on the test"):
        load_episode_list(path, tmp_path / "data", "miniimagenet", 2, 1, split="test")
    linked = tmp_path / "store" / "n00000009"  # a class folder linked into the split counts as in it
    (tmp_path / "data" / "miniImagenet" / "test" / "n00000001").rename(tmp_path / "store")
    (tmp_path / "store").rename(tmp_path / "store_tmp")
    linked.parent.mkdir()
    (tmp_path / "store_tmp").rename(linked)
    os.symlink(linked, tmp_path / "data" / "miniImagenet" / "test" / "n00000001")
    rows[3] = ("query", 1, 0, test(1, 1))
    write_episode_list(path, [rows])
    assert len(load_episode_list(path, tmp_path / "data", "miniimagenet", 2, 1, split="test")) == 1
    outside = tmp_path / "elsewhere.jpg"
    (tmp_path / "data" / "miniImagenet" / "test" / "n00000001" / "n0000000100000001.jpg").rename(outside)
    rows[3] = ("query", 1, 0, str(outside))
    write_episode_list(path, [rows])
    with pytest.raises(ValueError, match=rf":5: {outside} is outside .*miniImagenet; this test is on the test split"):
        load_episode_list(path, tmp_path / "data", "miniimagenet", 2, 1, split="test")


def test_a_decompression_bomb_is_one_line(tmp_path):
    """A small PNG whose header claims 20000x20000 pixels: Pillow's DecompressionBombError (not
    an OSError) was a traceback."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    root = tmp_path / "omniglot_resized" / "A" / "c0"
    root.mkdir(parents=True)
    (root / "0.png").write_bytes(bomb)
    path = tmp_path / "t.tsv"
    write_episode_list(path, [[("support", 0, 0, "A/c0/0.png"), ("query", 0, 1, "A/c0/0.png")]])
    with pytest.raises(ValueError, match=r":2: cannot read image .*0.png \(Image size"):
        load_episode_list(path, tmp_path, "omniglot", 1, 1)


def test_miniimagenet_files_and_decoding(tmp_path):
    """Files are named relative to miniImagenet/, and JPEGs are decoded as the original's
    tf.image.decode_jpeg did (Pillow's decoder differs by a few levels)."""
    import tensorflow as tf

    data = few_shot_data.load_miniimagenet(_mini_folder(tmp_path, classes=2, per_class=2, split="val"), ("val",))
    assert data["val"].files == (("val/n00000000/n0000000000000000.jpg", "val/n00000000/n0000000000000001.jpg"),
                                 ("val/n00000001/n0000000100000000.jpg", "val/n00000001/n0000000100000001.jpg"))
    file = tmp_path / "miniImagenet" / data["val"].files[1][0]
    np.testing.assert_array_equal(data["val"].images[1, 0], tf.io.decode_jpeg(file.read_bytes(), channels=3).numpy())
    assert not np.array_equal(data["val"].images[1, 0], np.asarray(Image.open(file).convert("RGB")))


def _image_errors(root):
    """(rows of one 5-way 1-shot MiniImagenet task with one bad image, expected message)."""
    good = [f"test/n{c:08d}/n{c:08d}{i:08d}.jpg" for c in range(5) for i in range(2)]
    bad = root / "miniImagenet" / "bad"
    bad.mkdir()
    Image.new("RGB", (84, 60)).save(bad / "small.jpg")
    Image.new("L", (84, 84)).save(bad / "grey.jpg")
    Image.new("RGB", (84, 84)).save(bad / "rgb.png")
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (bad / "text.jpg").write_bytes(b"hello")
    cases = [
        ("bad/missing.jpg", FileNotFoundError,
         "image bad/missing.jpg not found \\(looked for .*miniImagenet/bad/missing.jpg\\)"),
        ("bad/small.jpg", ValueError, "bad/small.jpg is 84x60 mode RGB, expected 84x84 RGB for miniimagenet"),
        ("bad/grey.jpg", ValueError, "bad/grey.jpg is 84x84 mode L, expected 84x84 RGB"),
        ("bad/broken.jpg", ValueError, "cannot read image .*broken.jpg"),
        ("bad/text.jpg", ValueError, "cannot read image .*text.jpg"),
    ]
    return good, cases, bad / "rgb.png"


def test_image_errors_name_file_and_line(tmp_path):
    _mini_folder(tmp_path, classes=5, per_class=2)
    good, cases, rgb_png = _image_errors(tmp_path)
    path = tmp_path / "tasks.tsv"
    for bad_path, error, message in cases:
        rows = [("support", j, 0, good[2 * j]) for j in range(5)] + [("query", j, 0, good[2 * j + 1]) for j in range(5)]
        rows[7] = ("query", 2, 0, bad_path)  # line 2 + 7 = 9 of the file
        write_episode_list(path, [rows])
        with pytest.raises(error, match=f"^{re.escape(str(path))}:9: {message}") as raised:
            load_episode_list(path, tmp_path, "miniimagenet", 5, 1)
        assert "\n" not in str(raised.value)
    # an RGB PNG of the right size is an acceptable image (the mode is what matters)
    rows = [("support", j, 0, good[2 * j]) for j in range(5)] + [("query", j, 0, good[2 * j + 1]) for j in range(5)]
    rows[0] = ("support", 0, 0, str(rgb_png))
    write_episode_list(path, [rows])
    assert load_episode_list(path, tmp_path, "miniimagenet", 5, 1)[0].support_inputs.shape == (1, 5, 84, 84, 3)
    # Omniglot wants greyscale 28x28
    _omniglot_folder(tmp_path, classes=1, per_class=1)
    Image.new("RGB", (28, 28)).save(tmp_path / "omniglot_resized" / "rgb.png")
    write_episode_list(path, [[("support", 0, 0, "rgb.png"), ("query", 0, 0, "Alphabet0/character00/00_00.png")]])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:2: rgb.png is 28x28 mode RGB, expected 28x28 grey"):
        load_episode_list(path, tmp_path, "omniglot", 1, 1)
    with pytest.raises(FileNotFoundError, match="episode list .*nothing.tsv not found"):
        load_episode_list(tmp_path / "nothing.tsv", tmp_path, "omniglot", 1, 1)
    with pytest.raises(ValueError, match="datasource must be one of"):
        load_episode_list(path, tmp_path, "sinusoid", 1, 1)


# ---------------------------------------------------------------- main.py


@pytest.fixture
def parse():
    def _parse(args):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["main"] + args)

    yield _parse
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("args,message", [
    (["--datasource=omniglot", "--test_tasks_file=t.tsv"], "--test_tasks_file is for testing: add --train=False"),
    (["--datasource=omniglot", "--write_test_tasks=t.tsv"], "--write_test_tasks is for testing"),
    (["--train=False", "--test_tasks_file=t.tsv"], "--test_tasks_file lists image episodes: only for"),
    (["--test_tasks_per_call=8"], "--test_tasks_per_call is for testing: add --train=False"),
    (["--train=False", "--datasource=omniglot", "--test_tasks_file=t.tsv", "--num_test_tasks=5"],
     "--num_test_tasks cannot be combined with --test_tasks_file"),
])
def test_flag_combinations_are_checked(parse, args, message):
    parse(args)
    with pytest.raises(ValueError, match=message):
        main._validate()


def _main(repo_root, *args):
    return subprocess.run([sys.executable, "-m", "maml_tf.main", "--flagfile=flags/miniimagenet_1shot_test.flags",
                           *args], cwd=repo_root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _body(path):
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_main_writes_the_pool_and_evaluates_a_list_identically(tmp_path, repo_root, shared_data):
    """End to end on a small generated MiniImagenet test split and the released weights: the
    fixed pool written with --write_test_tasks, evaluated again with --test_tasks_file, gives the
    same per-task rows; the second run lists the same tasks; a bad list is a one-line error."""
    from maml_tf.original_checkpoint import import_checkpoint

    run_dir, _, _ = import_checkpoint(str(shared_data / "original_checkpoint" / "model59000"), str(tmp_path / "logs"))
    _mini_folder(tmp_path / "data", classes=6, per_class=3)
    common = [f"--logdir={tmp_path / 'logs'}", f"--data_dir={tmp_path / 'data'}"]
    pool_file, again_file = tmp_path / "pool.tsv", tmp_path / "again.tsv"
    result_stem = os.path.join(run_dir, "test_ubs1_stepsize0.01")

    first = _main(repo_root, *common, "--num_test_tasks=4", f"--write_test_tasks={pool_file}")
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"Wrote the tasks to {pool_file}" in first.stdout
    with open(result_stem + ".pkl", "rb") as f:
        pool_rows = pickle.load(f)["mses"]
    body = _body(pool_file)
    assert body[0] == HEADER.strip() and len(body) == 1 + 4 * 10
    assert body[1].startswith("0\tsupport\t0\t0\ttest/n")

    second = _main(repo_root, *common, f"--test_tasks_file={pool_file}", f"--write_test_tasks={again_file}")
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"testing the 4 tasks of {pool_file}" in second.stdout
    with open(result_stem + ".pkl", "rb") as f:
        list_rows = pickle.load(f)["mses"]
    np.testing.assert_array_equal(list_rows, pool_rows)
    assert _body(again_file) == body
    with open(result_stem + ".json") as f:
        info = json.load(f)
    assert info["num_tasks"] == 4 and info["test_tasks_file"] == str(pool_file) and info["test_pool"] is None

    broken = tmp_path / "broken.tsv"
    broken.write_text("\n".join(body[:3]) + "\n0\tsupport\t7\t0\ttest/x.jpg\n")
    third = _main(repo_root, *common, f"--test_tasks_file={broken}")
    assert third.returncode != 0 and "Traceback" not in third.stderr
    assert third.stderr.strip().splitlines()[-1] == (
        f"maml_tf.main: error: {broken}:4: label 7 is outside 0..4 (5-way tasks, --num_classes)")
    for flags, pattern in (  # a test on the validation split of the list's test images; the list written over
            (["--test_set=False"], rf"maml_tf\.main: error: {pool_file}:4: test/n\S+ is in the test split; this test "
                                   r"is on the val split \(--test_set\): list that split's images"),
            ([f"--write_test_tasks={pool_file}"], r"maml_tf\.main: error: --write_test_tasks names the "
                                                  r"--test_tasks_file being read: write the tasks to another file")):
        refused = _main(repo_root, *common, f"--test_tasks_file={pool_file}", *flags)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert re.fullmatch(pattern, refused.stderr.strip().splitlines()[-1]), refused.stderr[-500:]


def test_omniglot_lists_are_checked_against_the_originals_split(omniglot_prepared, tmp_path):
    """On the real Omniglot folder (all 1623 characters): a list of validation-split characters
    passes as `val` and is refused as `test`, naming the split its image is in (the original's
    seeded split of the character folders, as the loader splits them); a tree that is not the
    full Omniglot cannot say a split (a one-line error, not a guess)."""
    root = omniglot_prepared / "omniglot_resized"
    names = few_shot_data.omniglot_characters(root)
    val = few_shot_data.omniglot_splits(names)["val"][:2]
    rows = [("support", label, 0, f"{val[label]}/{image}") for label in range(2)
            for image in sorted(os.listdir(root / val[label]))[:1]]
    rows += [("query", label, 1, f"{val[label]}/{sorted(os.listdir(root / val[label]))[1]}") for label in range(2)]
    path = tmp_path / "val.tsv"
    write_episode_list(path, [rows])
    assert len(load_episode_list(path, omniglot_prepared, "omniglot", 2, 1, split="val")) == 1
    with pytest.raises(ValueError, match=rf"{path}:2: {re.escape(rows[0][3])} is in the val split; this test is on "
                                         r"the test split"):
        load_episode_list(path, omniglot_prepared, "omniglot", 2, 1, split="test")
    small = tmp_path / "small" / "omniglot_resized"
    (small / "Alphabet").mkdir(parents=True)
    os.symlink(root / val[0], small / "Alphabet" / "character01")
    write_episode_list(path, [[("support", 0, 0, f"Alphabet/character01/{rows[0][3].split('/')[-1]}"),
                               ("query", 0, 0, f"Alphabet/character01/{rows[2][3].split('/')[-1]}")]])
    with pytest.raises(ValueError, match=r"omniglot_resized holds 1 character folders, expected 1623"):
        load_episode_list(path, small.parent, "omniglot", 1, 1, split="val")
    assert len(load_episode_list(path, small.parent, "omniglot", 1, 1)) == 1  # no split asked: read as listed
