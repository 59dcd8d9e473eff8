"""What keeping gradient sums in order costs (report/determinism.py): the supervised meta-step and
the half-cheetah TRPO step's KL gradient and inner step, each with grappler's memory optimiser on
(TensorFlow's default: large sums of three or more gradients added in the order their inputs
finish) and off (what maml_tf and rl set), alternating in one process on the same inputs.

    python benchmarks/ordered_sums.py [--configs=omniglot_20way_1shot,...] [--orders=second,first]
                                      [--rounds=10] [--calls=6] [--norl]

A tf.function's graph is optimised once per setting and both stay cached, so flipping the
setting between calls alternates the two graphs of one function with no retracing. For each row
the table gives the median time of each, their ratio, and how many distinct results `--calls`
calls on the same inputs gave (the meta-gradients; the KL gradient; the adapted parameters): 1
means bit-identical every time. How often the memory optimiser steps in depends on the graph's
size against the RAM free when it is first run, so the distinct counts vary from host to host.
"""
import hashlib
import os
import sys

import numpy as np
from absl import app, flags

import host  # benchmarks/host.py
import meta_step  # benchmarks/meta_step.py: the configurations, inputs and learners
import rl_batch  # benchmarks/rl_batch.py

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --configs, --orders and --rounds are meta_step.py's flags (its defaults: every configuration, both orders).
flags.DEFINE_integer("calls", 6, "calls per setting whose results are compared bit for bit", lower_bound=2)
flags.DEFINE_bool("rl", True, "also the half-cheetah velocity task's KL gradient and inner step (40 tasks x 10 paths)")
FLAGS = flags.FLAGS
SETTINGS = {"arrival order": False, "in order": True}


def _digest(tensors):
    return hashlib.sha256(b"".join(np.ascontiguousarray(t.numpy()).tobytes() for t in tensors)).hexdigest()


def compare(run, time_once):
    """{setting: (median seconds, distinct results)} of `run()` (its tensors hashed) and
    `time_once()` (seconds of one timed call) under both settings, alternating."""
    import statistics

    from report.determinism import keep_sums_in_order

    distinct, seconds = {}, {name: [] for name in SETTINGS}
    for name, keep in SETTINGS.items():
        keep_sums_in_order(keep)
        time_once()  # the graph for this setting: optimised and warmed up
        distinct[name] = len({_digest(run()) for _ in range(FLAGS.calls)})
    for _ in range(FLAGS.rounds):
        for name, keep in SETTINGS.items():
            keep_sums_in_order(keep)
            seconds[name].append(time_once())
    keep_sums_in_order(True)
    return {name: (statistics.median(seconds[name]), distinct[name]) for name in SETTINGS}


def _row(label, result):
    (arrival, arrival_distinct), (ordered, ordered_distinct) = result["arrival order"], result["in order"]
    print(f"| {label} | {1000 * arrival:.1f} | {1000 * ordered:.1f} | {ordered / arrival:.3f} | "
          f"{arrival_distinct} | {ordered_distinct} |", flush=True)


def _supervised(name, order):
    import tensorflow as tf

    config = meta_step.CONFIGS[name]
    batch = meta_step._batch(config, np.random.default_rng(0))
    learner = meta_step._learner(config, order == "first")
    gradients = tf.function(lambda support, query: learner.meta_gradients(support, query)[1], autograph=False)
    return compare(lambda: gradients(batch[:2], batch[2:]), lambda: meta_step._step_seconds(learner, batch))


def _rl():
    import time

    learner, support, query, _ = rl_batch.paper_batch("cheetah_vel", 40, 10)
    policy, rng = learner.policy, np.random.default_rng(1)
    # Off theta_old, where the KL gradient is zero: as at the finite differences' theta + eps v.
    policy.set_flat(policy.get_flat() + 1e-3 * rng.standard_normal(policy.get_flat().shape))

    def timed(fn):
        def once():
            start = time.perf_counter()
            _ = [t.numpy() for t in fn()]
            return time.perf_counter() - start
        return once

    kl_gradient = lambda: [learner.kl_gradient(support, query)[1]]  # noqa: E731
    adapt = lambda: learner.compiled_adapt(support)  # noqa: E731
    _row("half-cheetah KL gradient (graph)", compare(kl_gradient, timed(kl_gradient)))
    _row("half-cheetah inner step", compare(adapt, timed(adapt)))


def main(argv):
    del argv
    unknown = [name for name in FLAGS.configs if name not in meta_step.CONFIGS]
    if unknown or not set(FLAGS.orders) <= {"second", "first"}:
        sys.exit(f"--configs: choose from {list(meta_step.CONFIGS)}; --orders: second, first")
    print(f"{host.describe()}, {os.cpu_count()} CPUs; median of {FLAGS.rounds} alternating rounds; distinct results "
          f"in {FLAGS.calls} calls on the same inputs\n")
    print("| step | arrival order ms | in order ms | in order / arrival | distinct (arrival) | distinct (in order) |")
    print("|---|---|---|---|---|---|")
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            _row(f"{name}, {order} order, meta-step", _supervised(name, order))
    if FLAGS.rl:
        _rl()


if __name__ == "__main__":
    app.run(main)
