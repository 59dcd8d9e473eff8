"""Build miniImagenet/{train,val,test}/<wnid>/<file>.jpg (84x84 RGB) from the split CSVs.

    python -m data_prep.miniimagenet --csv_dir=DIR --images_dir=DIR --output_dir=DATA

`--csv_dir` holds Ravi & Larochelle's train.csv, val.csv, test.csv (header `filename,label`);
`--images_dir` holds the ImageNet images under the file names the CSVs list, in any folder
layout below it (flat, or nested as the distributed sets often are: train/<wnid>/*.jpg); a
listed name found twice is an error. As in the
original proc_images.py each image is resized with Lanczos and saved as JPEG with Pillow's
default quality; unlike it, images are converted to RGB first and the source folder is
left untouched (the original resized in place and moved the files). The prepared folder gets a
SHA256SUMS manifest; a second run checks every file against it.
"""
import csv
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from data_prep._common import (PrepError, atomic_directory, check_images, prepared_files, read_prep_info, run_main,
                               user_path, verify_content, write_manifest, write_prep_info)
from report.console import ProgressLine

SPLITS = ("train", "val", "test")
PAPER_COUNTS = {"train": (64, 600), "val": (16, 600), "test": (20, 600)}  # classes x images
IMAGE_SIZE = 84
JPEG_QUALITY = 75  # Pillow's default, which the original's im.save() used
OUTPUT_NAME = "miniImagenet"
IMAGE_KIND = ("JPEG", "RGB", (IMAGE_SIZE, IMAGE_SIZE))  # what every prepared file decodes to

log = logging.getLogger(__name__)


def read_split_csv(path):
    """[(filename, label)] rows of one split file, checked for shape and duplicates."""
    path = user_path(path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError as e:
        raise PrepError(f"split file not found: {path} (--csv_dir must hold {', '.join(s + '.csv' for s in SPLITS)})") from e
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PrepError(f"cannot read {path}: {e}") from e
    if not rows or rows[0] != ["filename", "label"]:
        raise PrepError(f"{path}: first line must be the header 'filename,label', got {','.join(rows[0]) if rows else 'an empty file'!r}")
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not all(row):
            raise PrepError(f"{path}:{line}: expected 'filename,label', got {','.join(row)!r}")
    for line, (name, label) in enumerate(rows[1:], start=2):
        for what, value in (("filename", name), ("label", label)):
            if not _plain_name(value):
                raise PrepError(f"{path}:{line}: the {what} {value!r} is not a plain file or folder name "
                                f"(it becomes part of an output path, so '/', '\\', '.' and '..' are refused)")
    rows = [tuple(r) for r in rows[1:]]
    if not rows:
        raise PrepError(f"{path} lists no images")
    duplicates = [name for name, n in Counter(name for name, _ in rows).items() if n > 1]
    if duplicates:
        raise PrepError(f"{path} lists {duplicates[0]} more than once")
    return rows


def _plain_name(value):
    """True for a name that stays one entry below its folder (no separator, not . or ..)."""
    return value not in (".", "..") and not any(c in value for c in "/\\\0")


def read_splits(csv_dir, expected_counts=PAPER_COUNTS):
    """{split: rows} for the three CSVs; with `expected_counts` also checks classes x images."""
    csv_dir = user_path(csv_dir)
    splits = {s: read_split_csv(csv_dir / f"{s}.csv") for s in SPLITS}
    seen = {}
    for split, rows in splits.items():
        per_class = Counter(label for _, label in rows)
        for label in per_class:
            if label in seen:
                raise PrepError(f"class {label} is in both {seen[label]}.csv and {split}.csv")
            seen[label] = split
        if expected_counts is not None:
            want_classes, want_images = expected_counts[split]
            if len(per_class) != want_classes or set(per_class.values()) != {want_images}:
                raise PrepError(f"{csv_dir / (split + '.csv')} has {len(per_class)} classes with {sorted(set(per_class.values()))} "
                                f"images each, expected {want_classes} x {want_images} (Ravi & Larochelle); "
                                f"pass --nocheck_paper_counts for other CSVs")
    names = Counter(name for rows in splits.values() for name, _ in rows)
    repeated = [name for name, n in names.items() if n > 1]
    if repeated:
        raise PrepError(f"{repeated[0]} is listed in more than one split file")
    return splits


def verify_output(folder, splits, check_content=True):
    """Check that `folder` holds exactly the files the CSVs list, one folder per class, and
    (`check_content`) that every file is as its SHA256SUMS recorded it at preparation."""
    folder = Path(folder)
    read_prep_info(folder)
    for split, rows in splits.items():
        expected = {}
        for name, label in rows:
            expected.setdefault(label, set()).add(name)
        split_dir = folder / split
        found = {d.name for d in split_dir.iterdir() if d.is_dir()} if split_dir.is_dir() else set()
        if found != set(expected):
            raise PrepError(f"{split_dir} has {len(found)} class folders, {split}.csv lists "
                            f"{len(expected)} classes; delete {folder} and rerun")
        for label, names in expected.items():
            if set(os.listdir(split_dir / label)) != names:
                raise PrepError(f"{split_dir / label} does not hold exactly the images {split}.csv "
                                f"lists; delete {folder} and rerun")
    if check_content:
        verify_content(folder, prepared_files(folder), *IMAGE_KIND, log)


def find_images(images_dir, names):
    """{name: path} of the files called one of `names` anywhere below `images_dir`.
    A name found in two places is an error naming both (which one is meant is unknowable).
    Symlinked folders are followed, each real folder once; hidden folders (.git, temporary
    folders of interrupted runs) are not searched."""
    wanted = set(names)
    found = {}
    visited = set()
    for directory, subdirs, files in os.walk(images_dir, followlinks=True):
        real = os.path.realpath(directory)
        if real in visited:  # a symlink loop, or a second link to a folder already searched
            subdirs[:] = []
            continue
        visited.add(real)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in files:
            if name in wanted:
                path = Path(directory) / name
                if name in found:
                    raise PrepError(f"{name} is in --images_dir twice: {found[name]} and {path}; "
                                    f"remove one (or point --images_dir at a folder holding one of them)")
                found[name] = path
    return found


def prepare_miniimagenet(csv_dir, images_dir, output_dir, expected_counts=PAPER_COUNTS, workers=None):
    """Write output_dir/miniImagenet and return its path; only verifies if already there.
    `workers`: resizing threads (None: one per CPU)."""
    if workers is not None and workers < 1:
        raise PrepError(f"--workers must be at least 1 (or left unset: one per CPU), got {workers}")
    splits = read_splits(csv_dir, expected_counts)
    final = user_path(output_dir) / OUTPUT_NAME
    if final.exists():
        verify_output(final, splits)
        log.info("%s already prepared and verified", final)
        return final
    images_dir = user_path(images_dir)
    if not images_dir.is_dir():
        raise PrepError(f"--images_dir={images_dir} is not a folder")
    log.info("looking for the %d images the CSVs list below %s", sum(len(rows) for rows in splits.values()), images_dir)
    available = find_images(images_dir, (name for rows in splits.values() for name, _ in rows))
    missing = [name for rows in splits.values() for name, _ in rows if name not in available]
    if missing:
        raise PrepError(f"{len(missing)} images listed in the CSVs are missing from --images_dir={images_dir}, "
                        f"e.g. {missing[0]}")
    with atomic_directory(final) as tmp:
        jobs = []
        for split, rows in splits.items():
            for label in {label for _, label in rows}:
                (tmp / split / label).mkdir(parents=True)
            jobs += [(available[name], tmp / split / label / name) for name, label in rows]
        _resize_all(jobs, workers or os.cpu_count() or 1)
        write_prep_info(tmp, {
            "dataset": "miniimagenet", "image_size": IMAGE_SIZE, "resample": "lanczos",
            "jpeg_quality": JPEG_QUALITY, "pillow": Image.__version__,
            "counts": {s: [len({label for _, label in rows}), len(rows)] for s, rows in splits.items()}})
        verify_output(tmp, splits, check_content=False)
        files = prepared_files(tmp)
        check_images(tmp, files, *IMAGE_KIND)
        write_manifest(tmp, files)
    log.info("wrote %s", final)
    return final


def _resize_all(jobs, workers):
    # Pillow releases the GIL while decoding, resizing and encoding, so threads scale.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        progress = ProgressLine(len(jobs), "resized images", print_fn=log.info)
        try:
            for done, _ in enumerate(pool.map(_resize_one, jobs), start=1):
                progress.update(done)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _resize_one(job):
    source, target = job
    try:
        with Image.open(source) as image:
            small = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    except (OSError, SyntaxError, ValueError) as e:
        raise PrepError(f"cannot read image {source}: {e}") from e
    small.save(target, format="JPEG", quality=JPEG_QUALITY)


def main(argv):
    del argv
    from absl import flags
    f = flags.FLAGS
    counts = PAPER_COUNTS if f.check_paper_counts else None
    run_main(lambda: prepare_miniimagenet(f.csv_dir, f.images_dir, f.output_dir, counts, f.workers),
             "data_prep.miniimagenet")


if __name__ == "__main__":
    from absl import flags

    from report import cli

    flags.DEFINE_string("csv_dir", None, "folder holding train.csv, val.csv and test.csv")
    flags.DEFINE_string("images_dir", None, "folder holding the ImageNet images named as in the CSVs")
    flags.DEFINE_string("output_dir", None, "folder to create miniImagenet/ in")
    flags.DEFINE_bool("check_paper_counts", True, "require 64/16/20 classes x 600 images")
    flags.DEFINE_integer("workers", None, "resizing threads (default: one per CPU)", lower_bound=1)
    flags.mark_flags_as_required(["csv_dir", "images_dir", "output_dir"])
    cli.run(main)
