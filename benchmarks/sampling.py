"""Cost of the few-shot data path: dataset load time and memory, ms per sampled meta-batch.

    python benchmarks/sampling.py --omniglot_dir=$HOME/data [--miniimagenet_dir=DATA]

Without --miniimagenet_dir, a stand-in MiniImagenet with the real counts (64/16/20 classes
x 600 JPEGs, 84x84) is generated in a temporary folder, since ImageNet images are not
available everywhere; decoding cost is close to, not identical with, real photos.
Prints markdown tables; times are medians over --repeats batches on this machine.
"""
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

from maml_tf.few_shot_data import FewShotSampler, load_miniimagenet, load_omniglot

flags.DEFINE_string("omniglot_dir", "~/data", "DATA folder holding omniglot_resized/")
flags.DEFINE_string("miniimagenet_dir", None, "DATA folder holding miniImagenet/ (default: generate one)")
flags.DEFINE_bool("keep_generated", False, "keep the generated MiniImagenet (path is printed) for reuse")
flags.DEFINE_integer("repeats", 50, "meta-batches timed per configuration")
FLAGS = flags.FLAGS

# (dataset, description, meta-batch, N, K, query per class): Table 1's training settings.
CONFIGS = [
    ("omniglot", "5-way 1-shot", 32, 5, 1, 1),
    ("omniglot", "5-way 5-shot", 32, 5, 5, 5),
    ("omniglot", "20-way 1-shot", 16, 20, 1, 1),
    ("omniglot", "20-way 5-shot", 16, 20, 5, 5),
    ("miniimagenet", "5-way 1-shot", 4, 5, 1, 15),
    ("miniimagenet", "5-way 5-shot", 4, 5, 5, 15),
]


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed_load(load, path, splits):
    before, start = rss_mb(), time.perf_counter()
    data = load(path, splits=splits)
    seconds = time.perf_counter() - start
    return data, seconds, sum(c.images.nbytes for c in data.values()) / 2**20, rss_mb() - before


def median_ms(fn, repeats):
    """(wall, CPU) medians in ms; CPU time is the honest number on a shared machine."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1e3 * float(np.median(wall)), 1e3 * float(np.median(cpu))


def generate_miniimagenet(root, per_class=600, seed=0):
    """Smooth random 84x84 JPEGs in the prepared layout, with the real class counts."""
    rng = np.random.default_rng(seed)
    for split, classes in (("train", 64), ("val", 16), ("test", 20)):
        for c in range(classes):
            folder = root / "miniImagenet" / split / f"n{split}{c:05d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
                pixels = np.asarray(small.resize((84, 84), Image.Resampling.BICUBIC), np.int16)
                pixels = np.clip(pixels + rng.integers(-12, 13, pixels.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:08d}.jpg", quality=75)


def main(argv):
    del argv
    loads, data = [], {}
    data["omniglot"], *stats = timed_load(load_omniglot, Path(FLAGS.omniglot_dir).expanduser(),
                                          ("train", "val", "test"))
    loads.append(("Omniglot, all splits (real)", *stats))
    scratch = None
    mini_dir = FLAGS.miniimagenet_dir
    if mini_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="mini_bench_"))
        start = time.perf_counter()
        generate_miniimagenet(scratch)
        print(f"(generated a stand-in MiniImagenet, 60000 JPEGs, in {time.perf_counter() - start:.0f} s, "
              f"at {scratch})\n")
        mini_dir = scratch
    try:
        kind = "generated" if scratch else "real"
        data["miniimagenet"], *stats = timed_load(load_miniimagenet, mini_dir, ("train", "val"))
        loads.append((f"MiniImagenet train+val ({kind})", *stats))
        _, *stats = timed_load(load_miniimagenet, mini_dir, ("test",))
        loads.append((f"MiniImagenet test ({kind})", *stats))
    finally:
        if scratch and not FLAGS.keep_generated:
            shutil.rmtree(scratch)

    print("| dataset | load s | uint8 arrays MB | RSS growth MB |\n|---|---|---|---|")
    for name, seconds, array_mb, rss in loads:
        print(f"| {name} | {seconds:.1f} | {array_mb:.0f} | {rss:.0f} |")
    print(f"\npeak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB\n")

    print("| dataset | task | meta-batch | query/class | ms per meta-batch (wall / CPU) | ms per eval task (wall / CPU) |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for dataset, name, batch, n, k, q in CONFIGS:
        sampler = FewShotSampler(data[dataset]["train"], n, k, q, rotate=dataset == "omniglot")
        train_wall, train_cpu = median_ms(lambda: sampler.sample(rng, batch), FLAGS.repeats)
        pool = sampler.eval_pool()
        counter = iter(range(10**9))
        eval_wall, eval_cpu = median_ms(lambda: pool[next(counter) % len(pool)], FLAGS.repeats)
        print(f"| {dataset} | {name} | {batch} | {q} | {train_wall:.2f} / {train_cpu:.2f} "
              f"| {eval_wall:.2f} / {eval_cpu:.2f} |")


if __name__ == "__main__":
    app.run(main)
