"""Helpers for the data-path tests (a plain module, so test files can import it by name)."""
import csv
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
# Resolved next to the repository (not skipped when absent): in CI a missing file must fail.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_file(*parts):
    path = SHARED_DATA.joinpath(*parts)
    assert path.is_file(), f"shared data file missing: {path}"
    return path


def linked_copy(folder, destination):
    """A copy of `folder` whose files are hard links to the originals (fast for the 32k Omniglot
    images). Replace a file in it (unlink, then write) rather than write into it, which would
    change the original too."""
    shutil.copytree(folder, destination, copy_function=os.link)
    return destination


def run_module(module, *args, timeout=300):
    """Run `python -m module args` from the repository root; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout)


def one_line_error(stderr, prog):
    """True if, besides absl's progress lines, stderr is one `prog: error: ...` line."""
    lines = [line for line in stderr.splitlines() if line.strip() and not re.match(r"I\d{4} ", line)]
    return len(lines) == 1 and lines[0].startswith(f"{prog}: error:") and "Traceback" not in stderr


def write_mini_subset(csv_dir, images_dir, counts, seed=0):
    """CSVs holding the first classes/images of the real ones, plus generated images of
    varied size and colour mode under those names. Returns {split: [(file, label)]}."""
    csv_dir.mkdir(parents=True, exist_ok=True)
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, (num_classes, per_class) in counts.items():
        by_label = defaultdict(list)
        with open(shared_file("miniimagenet", f"{split}.csv"), newline="") as f:
            for name, label in list(csv.reader(f))[1:]:
                by_label[label].append(name)
        rows = [(name, label) for label in list(by_label)[:num_classes] for name in by_label[label][:per_class]]
        with open(csv_dir / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["filename", "label"])
            writer.writerows(rows)
        for i, (name, _) in enumerate(rows):
            height, width = rng.integers(60, 160, size=2)
            # Smooth pictures (upsampled 4x4 noise), so JPEG loss stays small.
            image = Image.fromarray(rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8))
            image = image.resize((int(width), int(height)), Image.Resampling.BICUBIC)
            image = {0: image, 1: image.convert("L"), 2: image.convert("CMYK")}[i % 3]
            image.save(images_dir / name, format="JPEG")
        written[split] = rows
    return written
