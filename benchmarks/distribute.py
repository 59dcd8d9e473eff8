"""What tf.distribute costs here, and what it would buy: prints three markdown tables.

    python benchmarks/distribute.py                 # all parts, about 4 minutes on 2 cores
    python benchmarks/distribute.py --parts=overhead --rounds=30

1. overhead   the strategy path (`maml_tf.distributed.DistributedLearner` on a MirroredStrategy
              of ONE device) against the plain `MetaLearner.train_step`, timed in alternation in
              one process at the paper's meta-batch sizes; the target is at most 10 %.
2. allreduce  two worker processes on localhost (MultiWorkerMirroredStrategy, TF_CONFIG, gRPC
              ring): the all-reduce of each model's gradient (with the stop vote, the only
              collectives of a supervised meta-iteration), one collective per tensor against the
              batched all-reduce that training uses, and the per-iteration stop vote, in ms.
3. projection the paper's MiniImagenet 5-way 1-shot meta-iteration (4 tasks, 5 inner steps,
              second order) timed here per task, and the projected meta-iteration and 60k-iteration
              run on W workers: ceil(4 / W) tasks per worker + the all-reduce measured in part 2
              (localhost; a real network adds its latency). A meta-batch of 4 splits over at most 4
              workers: the paper's run cannot use 8 or 64 (the table says so).
4. rl_projection  one half-cheetah direction MAML-TRPO meta-iteration timed here, projected onto
              W workers likewise (40 tasks: at most 40 workers).

Times are of this host (name and ISA printed); compare the ratios, not the absolute values.
"""
import json
import math
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))  # cluster.py

import maml_tf  # noqa: E402,F401  (before TensorFlow loads: its oneDNN default, as the entry points run)
from absl import app, flags  # noqa: E402

import host  # noqa: E402  (benchmarks/host.py)

flags.DEFINE_list("parts", ["overhead", "allreduce", "projection", "rl_projection"], "which tables to print")
flags.DEFINE_integer("rounds", 15, "timed steps of each path (alternating), after a warm-up")
flags.DEFINE_string("worker", None, "internal: 'allreduce' in a multi-worker job")
FLAGS = flags.FLAGS

# name: (datasource, classes, meta-batch, K, inner steps, alpha, first order, model options)
CONFIGS = {
    "sinusoid": ("sinusoid", 1, 25, 10, 1, 0.01, False, {"norm": "None"}),
    "omniglot_5way_1shot": ("omniglot", 5, 32, 1, 1, 0.4, False, {}),
    "omniglot_5way_1shot_first_order": ("omniglot", 5, 32, 1, 1, 0.4, True, {}),
    "miniimagenet_5way_1shot": ("miniimagenet", 5, 4, 1, 5, 0.01, False, {"num_filters": 32, "max_pool": True}),
}
GRADIENTS = ["sinusoid", "omniglot_5way_1shot", "miniimagenet_5way_1shot"]  # models whose gradient is all-reduced


def host_line():
    return f"{host.describe()}, {os.cpu_count()} cores"


def build(name, tasks=None):
    """(learner, batch) of configuration `name`, random inputs of the real sizes."""
    import numpy as np

    from maml_tf import experiment
    from maml_tf.episodes import EpisodeBatch

    datasource, n, meta_batch, k, steps, alpha, first_order, options = CONFIGS[name]
    tasks = tasks or meta_batch
    model = experiment.build_model(datasource, num_classes=max(n, 2), **options)
    learner = experiment.build_learner(model, datasource, update_batch_size=k, update_lr=alpha,
                                       num_inner_steps=steps, first_order=first_order)
    rng = np.random.default_rng(0)
    if datasource == "sinusoid":
        x = rng.uniform(-5, 5, (tasks, 2 * k, 1)).astype(np.float32)
        y = np.sin(x).astype(np.float32)
        return learner, EpisodeBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:])
    shape = (28, 28, 1) if datasource == "omniglot" else (84, 84, 3)
    query = k if datasource == "omniglot" else 15
    images = rng.random((tasks, n * (k + query), *shape), dtype=np.float32)
    labels = np.tile(np.eye(n, dtype=np.float32), (tasks, k + query, 1))
    return learner, EpisodeBatch(images[:, :n * k], labels[:, :n * k], images[:, n * k:], labels[:, n * k:])


def timed(step, batch):
    start = time.perf_counter()
    float(step(batch.support, batch.query).query_losses[-1])
    return time.perf_counter() - start


def overhead_table():
    import tensorflow as tf

    from maml_tf.distributed import DistributedLearner

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    rows = ["| configuration | meta-batch | plain train_step (ms) | strategy path, 1 replica (ms) | overhead |",
            "|---|---|---|---|---|"]
    for name in [n for n in CONFIGS if not n.startswith("miniimagenet")]:
        plain, batch = build(name)
        with strategy.scope():
            replicated, _ = build(name)
        distributed = DistributedLearner(replicated, strategy)
        times = {"plain": [], "strategy": []}
        for path in (plain, distributed):  # warm-up: trace
            timed(path.train_step, batch)
        for _ in range(FLAGS.rounds):
            times["plain"].append(timed(plain.train_step, batch))
            times["strategy"].append(timed(distributed.train_step, batch))
        a, b = (statistics.median(times[k]) * 1e3 for k in ("plain", "strategy"))
        rows.append(f"| {name} | {CONFIGS[name][2]} | {a:.1f} | {b:.1f} | {100 * (b / a - 1):+.1f} % |")
    return rows


def allreduce_worker():
    """In each process of a 2-worker job: median ms of one all-reduce of each model's gradient
    and of the stop vote; the chief prints JSON."""
    from report import distribution

    strategy = distribution.make_strategy("multi_worker")
    import tensorflow as tf

    mean = tf.distribute.ReduceOp.MEAN
    result = {}
    for name in GRADIENTS + ["rl_policy_half_cheetah"]:
        if name == "rl_policy_half_cheetah":  # the 100-100 Gaussian MLP, 20 observations, 6 actions
            gradients = [tf.ones(shape) for shape in [(20, 100), (100,), (100, 100), (100,), (100, 6), (6,), (6,)]]
        else:
            gradients = [tf.ones_like(v) for v in build(name)[0].variables]
        ways = {  # one collective per tensor, or the batched all-reduce DistributedLearner uses
            "per_tensor": tf.function(lambda: [strategy.reduce(mean, strategy.run(tf.identity, args=(g,)), axis=None)
                                               for g in gradients], autograph=False),
            "batched": tf.function(lambda: strategy.run(
                lambda: tf.distribute.get_replica_context().all_reduce(mean, gradients)), autograph=False),
        }
        result[name] = {"parameters": int(sum(math.prod(g.shape) for g in gradients)),
                        "tensors": len(gradients)}
        for way, reduce in ways.items():
            reduce()
            times = []
            for _ in range(max(FLAGS.rounds, 20)):
                start = time.perf_counter()
                tf.nest.map_structure(lambda t: t.numpy(), strategy.experimental_local_results(reduce()))
                times.append(time.perf_counter() - start)
            result[name][way] = statistics.median(times) * 1e3
    times = []
    for _ in range(FLAGS.rounds):
        start = time.perf_counter()
        distribution.any_worker(strategy, False)
        times.append(time.perf_counter() - start)
    result["stop_vote_ms"] = statistics.median(times) * 1e3
    if distribution.is_chief(strategy):
        print("RESULT " + json.dumps(result))


def measure_allreduce():
    from cluster import run_workers

    results = run_workers([os.path.abspath(__file__), "--worker=allreduce", f"--rounds={FLAGS.rounds}"],
                          timeout=600)
    for rc, out, err in results:
        if rc != 0:
            raise SystemExit(f"allreduce job failed: {err[-2000:]}")
    line = next(l for out in (r[1] for r in results) for l in out.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def allreduce_table(measured):
    rows = ["| model | parameters (tensors) | one all-reduce per tensor (ms) | batched all-reduce, as trained (ms) |",
            "|---|---|---|---|"]
    for name in GRADIENTS + ["rl_policy_half_cheetah"]:
        m = measured[name]
        rows.append(f"| {name} | {m['parameters']:,} ({m['tensors']}) | {m['per_tensor']:.2f} | {m['batched']:.2f} |")
    rows.append(f"| stop vote (one scalar, every iteration) | 1 | {measured['stop_vote_ms']:.2f} | |")
    return rows


def projection_table(measured):
    name = "miniimagenet_5way_1shot"
    learner, one_task = build(name, tasks=1)
    timed(learner.train_step, one_task)
    per_task = statistics.median(timed(learner.train_step, one_task) for _ in range(max(3, FLAGS.rounds // 5)))
    full, batch = build(name)
    timed(full.train_step, batch)
    per_iteration = statistics.median(timed(full.train_step, batch) for _ in range(3))
    allreduce = (measured[name]["batched"] + measured["stop_vote_ms"]) / 1e3
    rows = [f"MiniImagenet 5-way 1-shot, second order: one meta-iteration of 4 tasks {per_iteration:.2f} s here, "
            f"one task alone {per_task:.2f} s.", "",
            "| workers | tasks per worker | projected meta-iteration (s) | projected 60k iterations (h) | speed-up |",
            "|---|---|---|---|---|"]
    for workers in (1, 2, 4, 8, 64):
        if 4 % workers:
            rows.append(f"| {workers} | - | the paper's meta-batch of 4 does not split over {workers} workers | - | - |")
            continue
        seconds = per_iteration if workers == 1 else (4 // workers) * per_task + allreduce
        rows.append(f"| {workers} | {4 // workers} | {seconds:.2f} | {seconds * 60000 / 3600:.1f} | "
                    f"{per_iteration / seconds:.1f}x |")
    return rows


def rl_projection_table(measured):
    """One single-process half-cheetah direction MAML-TRPO meta-iteration (flags/rl_cheetah_dir.flags)
    timed here, projected onto W workers: everything but conjugate gradient's few vector
    operations is per task (sampling, baselines, the inner step, every gradient of the TRPO
    step), so ceil(40 / W) / 40 of it, plus one all-reduce of the policy gradient (measured in
    part 2) for each of the step's at most 40 reduced quantities (surrogate gradient, 22 KL
    gradients, line search)."""
    import csv
    import tempfile

    from rl.config import TrainConfig
    from rl.trainer import run

    config = TrainConfig(env="cheetah_dir", mode="maml", fast_lr=0.1, meta_batch_size=40, fast_batch_size=20,
                         max_path_length=200, n_itr=1, max_kl=0.01, discount=0.99, batch_in_steps=True, seed=1)
    with tempfile.TemporaryDirectory() as logdir:
        run(config, logdir)
        with open(os.path.join(logdir, "progress.csv")) as f:
            seconds = float(next(csv.DictReader(f))["ItrTime"])
    allreduce = (40 * measured["rl_policy_half_cheetah"]["batched"] + measured["stop_vote_ms"]) / 1e3
    rows = [f"Half-cheetah direction, MAML-TRPO (40 tasks x 20 paths of 200 steps): one meta-iteration "
            f"{seconds:.1f} s here (single process, first iteration).", "",
            "| workers | tasks per worker | projected meta-iteration (s) | projected 800 iterations (h) | speed-up |",
            "|---|---|---|---|---|"]
    for workers in (1, 8, 40, 64):
        if workers > 40:
            rows.append(f"| {workers} | - | 40 tasks split over at most 40 workers | - | - |")
            continue
        projected = seconds if workers == 1 else seconds * math.ceil(40 / workers) / 40 + allreduce
        rows.append(f"| {workers} | {math.ceil(40 / workers)} | {projected:.2f} | {projected * 800 / 3600:.2f} | "
                    f"{seconds / projected:.1f}x |")
    return rows


def main(argv):
    if FLAGS.worker == "allreduce":
        allreduce_worker()
        return
    print(f"Host: {host_line()}\n")
    if "overhead" in FLAGS.parts:
        print("\n".join(overhead_table()) + "\n")
    measured = None
    if {"allreduce", "projection", "rl_projection"} & set(FLAGS.parts):
        measured = measure_allreduce()
    if "allreduce" in FLAGS.parts:
        print("\n".join(allreduce_table(measured)) + "\n")
    if "projection" in FLAGS.parts:
        print("\n".join(projection_table(measured)) + "\n")
    if "rl_projection" in FLAGS.parts:
        print("\n".join(rl_projection_table(measured)))


if __name__ == "__main__":
    app.run(main)
