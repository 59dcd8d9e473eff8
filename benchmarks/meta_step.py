"""Milliseconds per meta-iteration for every Table 1 configuration: the batched fast path
against the per-task reference (`ReferenceLearner`, tests/reference_maml.py), second and first order.

    python benchmarks/meta_step.py                      # everything (the reference takes a while)
    python benchmarks/meta_step.py --configs=omniglot_5way_1shot --orders=second --rounds=20

Each (configuration, order) runs in its own process so peak RSS is its own: first the batched
path alone (trace, then its peak RSS), then the reference alone (its peak RSS), then the two
timed in alternation (`train_step` scoring the query set after every inner step; with several
inner steps also the lean `train_step` that scores only the last, as training runs it), so that all see the same load on a shared machine and their
ratio is the figure to trust. Inputs are random at the real sizes. Prints a markdown table.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))  # reference_maml

from absl import app, flags  # noqa: E402

# name: (datasource, classes N, meta-batch, K, query per class, inner steps, alpha, model options)
CONFIGS = {
    "sinusoid": ("sinusoid", 1, 25, 10, 10, 1, 0.01, {"norm": "None"}),
    "omniglot_5way_1shot": ("omniglot", 5, 32, 1, 1, 1, 0.4, {}),
    "omniglot_5way_5shot": ("omniglot", 5, 32, 5, 5, 1, 0.4, {}),
    "omniglot_20way_1shot": ("omniglot", 20, 16, 1, 1, 5, 0.1, {}),
    "omniglot_nonconv_5way_1shot": ("omniglot", 5, 32, 1, 1, 1, 0.4, {"conv": False}),
    "miniimagenet_5way_1shot": ("miniimagenet", 5, 4, 1, 15, 5, 0.01, {"num_filters": 32, "max_pool": True}),
    "miniimagenet_5way_5shot": ("miniimagenet", 5, 2, 5, 15, 5, 0.01, {"num_filters": 32, "max_pool": True}),
}

flags.DEFINE_list("configs", list(CONFIGS), f"configurations to time, from {list(CONFIGS)}")
flags.DEFINE_list("orders", ["second", "first"], "second and/or first (stop_grad)")
flags.DEFINE_integer("rounds", 10, "timed meta-iterations of each path (alternating), after one warm-up each")
flags.DEFINE_float("max_seconds", 240, "stop a configuration's timed rounds after this long (at least 3 rounds)")
flags.DEFINE_bool("reference", True, "also time the per-task reference (needed for the speed-up)")
flags.DEFINE_string("worker", None, "internal: run one 'config:order' and print JSON")
FLAGS = flags.FLAGS


def _peak_rss_mb():
    """VmHWM: this process's peak resident set since start (or since `_reset_peak_rss`)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _batch(config, rng):
    import numpy as np

    datasource, n, tasks, k, q, _, _, _ = config
    if datasource == "sinusoid":
        x = rng.uniform(-5, 5, (tasks, k + q, 1)).astype(np.float32)
        y = (rng.uniform(0.1, 5, (tasks, 1, 1)) * np.sin(x - rng.uniform(0, np.pi, (tasks, 1, 1)))).astype(np.float32)
        return x[:, :k], y[:, :k], x[:, k:], y[:, k:]
    shape = (28, 28, 1) if datasource == "omniglot" else (84, 84, 3)
    labels = np.eye(n, dtype=np.float32)
    return (rng.random((tasks, n * k, *shape), dtype=np.float32),
            np.broadcast_to(labels[np.tile(np.arange(n), k)], (tasks, n * k, n)).copy(),
            rng.random((tasks, n * q, *shape), dtype=np.float32),
            np.broadcast_to(labels[np.tile(np.arange(n), q)], (tasks, n * q, n)).copy())


def _learner(config, first_order, batched):
    import keras

    from maml_tf import experiment
    from reference_maml import ReferenceLearner

    datasource, n, _, k, _, steps, alpha, options = config
    keras.utils.set_random_seed(0)
    model = experiment.build_model(datasource, num_classes=n, **options)
    return experiment.build_learner(model, datasource, update_batch_size=k, update_lr=alpha, num_inner_steps=steps,
                                    first_order=first_order, learner_class=None if batched else ReferenceLearner)


def _step_seconds(learner, batch, score_every_step=True):
    start = time.perf_counter()
    out = learner.train_step(batch[:2], batch[2:], score_every_step)
    _ = float(out.support_loss)  # wait for the result
    return time.perf_counter() - start


def run_worker(spec):
    """One configuration and order, in this process; returns a dict of measurements."""
    import numpy as np

    name, order = spec.split(":")
    config = CONFIGS[name]
    batch = _batch(config, np.random.default_rng(0))
    result = {"config": name, "order": order}
    paths = {"batched": True, "reference": False} if FLAGS.reference else {"batched": True}
    learners = {}
    for path, batched in paths.items():
        if path == "reference":
            _reset_peak_rss()
        learners[path] = _learner(config, order == "first", batched)
        result[f"{path}_trace_s"] = _step_seconds(learners[path], batch)  # trace + first step
        _step_seconds(learners[path], batch)  # warm-up
        result[f"{path}_peak_rss_mb"] = _peak_rss_mb()
    timed = [(path, learner, True) for path, learner in learners.items()]
    inner_steps = config[5]
    if inner_steps > 1:  # the lean step differs only with several inner steps
        _step_seconds(learners["batched"], batch, False)  # trace
        _step_seconds(learners["batched"], batch, False)  # warm-up
        timed.append(("train_step", learners["batched"], False))
    times = {path: [] for path, _, _ in timed}
    start = time.perf_counter()
    for i in range(FLAGS.rounds):
        for path, learner, step in timed:
            times[path].append(_step_seconds(learner, batch, step))
        if i >= 2 and time.perf_counter() - start > FLAGS.max_seconds:
            break
    for path, values in times.items():
        result[f"{path}_median_ms"] = 1000 * statistics.median(values)
        result[f"{path}_min_ms"] = 1000 * min(values)
        result[f"{path}_rounds"] = len(values)
    return result


def _machine():
    import tensorflow as tf

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, TF {tf.__version__}, "
            f"oneDNN {onednn}, load average at start {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main(argv):
    del argv
    if FLAGS.worker:
        print("RESULT " + json.dumps(run_worker(FLAGS.worker)), flush=True)
        return
    unknown = set(FLAGS.configs) - set(CONFIGS)
    if unknown:
        sys.exit(f"unknown configurations {sorted(unknown)}; choose from {list(CONFIGS)}")
    print(f"Machine: {_machine()}\n", flush=True)
    rows = []
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            cmd = [sys.executable, os.path.abspath(__file__), f"--worker={name}:{order}", f"--rounds={FLAGS.rounds}",
                   f"--max_seconds={FLAGS.max_seconds}", f"--reference={FLAGS.reference}"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                print(f"{name} {order}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(lines[-1][len("RESULT "):]))
            print(_row(rows[-1]), file=sys.stderr, flush=True)
    print(f"Load average at end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| configuration | order | batched median / min ms | batched peak RSS MB | reference median / min ms "
          "| reference peak RSS MB | speed-up (median) | rounds | batched lean train_step median ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(_row(row))


def _row(r):
    cells = [r["config"], r["order"], f"{r['batched_median_ms']:.1f} / {r['batched_min_ms']:.1f}",
             f"{r['batched_peak_rss_mb']:.0f}"]
    if "reference_median_ms" in r:
        cells += [f"{r['reference_median_ms']:.1f} / {r['reference_min_ms']:.1f}", f"{r['reference_peak_rss_mb']:.0f}",
                  f"{r['reference_median_ms'] / r['batched_median_ms']:.2f}x"]
    else:
        cells += ["-", "-", "-"]
    cells.append(str(r["batched_rounds"]))
    cells.append(f"{r['train_step_median_ms']:.1f}" if "train_step_median_ms" in r else "= full step")
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    app.run(main)
