"""The test protocol's speed: tasks per second of `evaluation.evaluate_tasks` at several tasks
per call (1 = one task at a time, as the original's test loop), timed in one process on the
same tasks, and the largest difference of any task's numbers from the one-at-a-time rows.

    python benchmarks/evaluation.py                        # all configurations, ~5 minutes
    python benchmarks/evaluation.py --configs=miniimagenet_5way_1shot --tasks=20 --per_call=1,4,10
    python benchmarks/evaluation.py --xla --configs=omniglot_5way_1shot   # also compiled by XLA
    python benchmarks/evaluation.py --unrolled_rounds=5 --tasks=20 --per_call=1,20   # loop vs unrolled

Random weights and images of the real sizes, 10 inner steps as the test runs them. Prints a
markdown table; the speed-up is against 1 task per call (graph) in the same run. Roofline:
conv and dense FLOPs per task counted analytically from the model (`task_flops`) over the
time, against the fp32 matmul peak measured at the start (benchmarks/host.py). With
`--unrolled_rounds`, each graph row is the median of that many passes alternating with the same
learner's steps unrolled (the "graph, unrolled" row: `MetaLearner.unrolled_evaluate_tasks` in a tf.function,
as `evaluate` ran before its steps 2..n went into a while loop), each traced before timing.
"""
import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import maml_tf  # noqa: E402,F401  (before TensorFlow loads: its oneDNN default, as the entry points run)
from absl import app, flags  # noqa: E402

# name: (datasource, classes, K, query per class, alpha, model options)
CONFIGS = {
    "sinusoid": ("sinusoid", 1, 5, 5, 0.001, {"norm": "None"}),
    "omniglot_5way_1shot": ("omniglot", 5, 1, 1, 0.4, {}),
    "omniglot_20way_1shot": ("omniglot", 20, 1, 1, 0.1, {}),
    "miniimagenet_5way_1shot": ("miniimagenet", 5, 1, 15, 0.01, {"num_filters": 32, "max_pool": True}),
}
flags.DEFINE_list("configs", list(CONFIGS), "configurations")
flags.DEFINE_integer("tasks", 40, "tasks evaluated by each variant")
flags.DEFINE_list("per_call", ["1", "8", "40"], "tasks per call to compare")
flags.DEFINE_bool("xla", False, "also time each tasks-per-call with the adaptation compiled by XLA (--jit_compile)")
flags.DEFINE_integer("unrolled_rounds", 0, "if > 0: time the graph's steps in their while loop (the default) and "
                     "unrolled (MetaLearner.unrolled_evaluate_tasks), alternating this many passes over the tasks; medians")
FLAGS = flags.FLAGS


def pool(name, tasks):
    """`tasks` one-task EpisodeBatches of configuration `name` (random, seeded)."""
    import numpy as np

    from maml_tf.episodes import EpisodeBatch

    datasource, n, k, query, _, _ = CONFIGS[name]
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(tasks):
        if datasource == "sinusoid":
            x = rng.uniform(-5, 5, (1, k + query, 1)).astype(np.float32)
            y = (rng.uniform(0.1, 5) * np.sin(x - rng.uniform(0, np.pi))).astype(np.float32)
            batches.append(EpisodeBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:]))
            continue
        shape = (28, 28, 1) if datasource == "omniglot" else (84, 84, 3)
        images = rng.random((1, n * (k + query), *shape), dtype=np.float32)
        labels = np.tile(np.eye(n, dtype=np.float32), (1, k + query, 1))
        batches.append(EpisodeBatch(images[:, :n * k], labels[:, :n * k], images[:, n * k:], labels[:, n * k:]))
    return batches


def task_flops(model, n_support, n_query, steps):
    """Conv and dense FLOPs of one test task (2 x multiply-adds; batch norm, ReLU, pooling and
    losses not counted). With F_l layer l's forward FLOPs per example: each inner step runs the
    support forward (F_l), the kernel gradient (F_l) and, past the first layer, the input
    gradient (F_l); the query set is scored after each of the `steps` steps (F_l)."""
    import keras

    products = [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    total = 0
    for index, layer in enumerate(products):
        # output pixels of a conv (none for a dense layer) x the kernel's multiply-adds
        forward = 2 * math.prod(layer.output.shape[1:-1]) * math.prod(layer.kernel.shape)
        total += steps * (n_support * forward * (3 if index else 2) + n_query * forward)
    return total


def main(argv):
    import keras
    import numpy as np

    import host
    from maml_tf import evaluation, experiment

    peak = host.matmul_peak_gflops()
    print(f"Host: {host.describe()}, {os.cpu_count()} cores; {FLAGS.tasks} tasks, 10 inner steps; "
          f"fp32 matmul peak (TensorFlow 2048 x 2048, best of 5) {peak:.1f} GFLOP/s\n")
    print("| configuration | compiled | tasks per call | tasks/s | speed-up | GFLOP per task (analytic) | "
          "GFLOP/s (% of peak) | max difference from 1 per call (graph) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in FLAGS.configs:
        datasource, n, k, query, alpha, options = CONFIGS[name]
        tasks = pool(name, FLAGS.tasks)
        n_support, n_query = (k, query) if datasource == "sinusoid" else (n * k, n * query)
        reference, base = None, None
        for jit_compile in (False, True) if FLAGS.xla else (False,):
            keras.utils.set_random_seed(0)
            model = experiment.build_model(datasource, num_classes=max(n, 2), **options)
            learner = experiment.build_learner(model, datasource, update_batch_size=k, update_lr=alpha,
                                               num_inner_steps=1, jit_compile=jit_compile)
            gflop = task_flops(model, n_support, n_query, 10) / 1e9
            variants = {"XLA" if jit_compile else "graph": learner}
            if FLAGS.unrolled_rounds and not jit_compile:
                variants["graph, unrolled"] = _unrolled(learner)
            for per_call in (int(p) for p in FLAGS.per_call):
                seconds, rows = {variant: [] for variant in variants}, {}
                for runner in variants.values():
                    evaluation.evaluate_tasks(runner, tasks[:per_call], 10, tasks_per_call=per_call)  # trace
                for _ in range(max(1, FLAGS.unrolled_rounds)):
                    for variant, runner in variants.items():
                        start = time.perf_counter()
                        rows[variant] = evaluation.evaluate_tasks(runner, tasks, 10, tasks_per_call=per_call)
                        seconds[variant].append(time.perf_counter() - start)
                        reference = rows[variant] if reference is None else reference
                for variant, times in seconds.items():
                    rate = len(tasks) / statistics.median(times)
                    base = rate if base is None else base
                    print(f"| {name} | {variant} | {per_call} | {rate:.1f} | {rate / base:.1f}x | "
                          f"{gflop:.3g} | {gflop * rate:.1f} ({100 * gflop * rate / peak:.0f}%) | "
                          f"{np.max(np.abs(rows[variant] - reference)):.2g} |", flush=True)


def _unrolled(learner):
    """The learner with `evaluate` running every inner step unrolled (`adapt_tasks`), as before
    the while loop: a shallow copy whose compiled evaluation is replaced."""
    import copy

    import tensorflow as tf

    unrolled = copy.copy(learner)
    unrolled._compiled_evaluate_tasks = tf.function(learner.unrolled_evaluate_tasks, autograph=False)
    return unrolled


if __name__ == "__main__":
    app.run(main)
