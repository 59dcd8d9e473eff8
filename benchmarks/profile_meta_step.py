"""Where a meta-iteration's time goes: TensorFlow op types ranked by time, from a profiler trace.

    python benchmarks/profile_meta_step.py --config=omniglot_5way_1shot --order=second [--steps=5]

Uses the configurations and random inputs of `benchmarks/meta_step.py` and the batched (default)
path, or the reference with `--profile_reference`. After two warm-up steps it traces `--steps`
meta-iterations with `tf.profiler`, reads the trace (an XSpace protobuf) and sums the duration of
each executed op by type. Ops of a graph may run on two inter-op threads at once, so the column
total can exceed the wall time per step, which is printed too. Prints a markdown table.
"""
import collections
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from absl import app, flags  # noqa: E402

import meta_step  # noqa: E402  (its CONFIGS, inputs and learner construction)
from xspace_ops import op_time_by_type  # noqa: E402

flags.DEFINE_string("config", "omniglot_5way_1shot", f"one of {list(meta_step.CONFIGS)}")
flags.DEFINE_enum("order", "second", ["second", "first"], "second or first (stop_grad) order")
flags.DEFINE_integer("steps", 5, "traced meta-iterations")
flags.DEFINE_integer("top", 15, "op types to list")
flags.DEFINE_bool("profile_reference", False, "profile the per-task reference path instead of the batched one")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import numpy as np
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    if FLAGS.config not in meta_step.CONFIGS:
        sys.exit(f"--config={FLAGS.config!r}: choose from {list(meta_step.CONFIGS)}")
    config = meta_step.CONFIGS[FLAGS.config]
    batch = meta_step._batch(config, np.random.default_rng(0))
    learner = meta_step._learner(config, FLAGS.order == "first", not FLAGS.profile_reference)
    for _ in range(2):
        meta_step._step_seconds(learner, batch)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        for _ in range(FLAGS.steps):
            meta_step._step_seconds(learner, batch)
        wall_ms = 1000 * (time.perf_counter() - start) / FLAGS.steps
        tf.profiler.experimental.stop()
        traces = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        if not traces:
            sys.exit(f"the profiler wrote no trace under {logdir}")
        totals = collections.defaultdict(lambda: [0.0, 0])
        for trace in traces:
            xspace = xplane_pb2.XSpace()
            with open(trace, "rb") as f:
                xspace.ParseFromString(f.read())
            op_time_by_type(xspace, totals)
    if not totals:
        sys.exit("the trace holds no TensorFlow op events: nothing to rank")
    all_ms = sum(t for t, _ in totals.values()) / 1000 / FLAGS.steps
    path = "reference" if FLAGS.profile_reference else "batched"
    print(f"{FLAGS.config}, {FLAGS.order} order, {path} path: {wall_ms:.1f} ms per meta-iteration while traced "
          f"(profiler overhead included), {all_ms:.1f} ms of op time; load average "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| op type | ms per meta-iteration | share of op time | ops per meta-iteration |")
    print("|---|---|---|---|")
    ranked = sorted(totals.items(), key=lambda item: -item[1][0])
    for op_type, (us, count) in ranked[:FLAGS.top]:
        print(f"| {op_type} | {us / 1000 / FLAGS.steps:.1f} | {100 * us / 1000 / FLAGS.steps / all_ms:.0f}% "
              f"| {count / FLAGS.steps:.0f} |")
    rest = ranked[FLAGS.top:]
    if rest:
        us = sum(t for _, (t, _) in rest)
        print(f"| {len(rest)} other types | {us / 1000 / FLAGS.steps:.1f} | {100 * us / 1000 / FLAGS.steps / all_ms:.0f}% "
              f"| {sum(c for _, (_, c) in rest) / FLAGS.steps:.0f} |")


if __name__ == "__main__":
    app.run(main)
