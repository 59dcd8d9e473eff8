"""What `maml_tf.main`'s default (`--jit_compile` unset) chooses on this machine, and what the
choosing costs: for every configuration and order, `xla_choice.time_graph_and_xla` on our lean
`train_step` (as training runs it), in a fresh process per row with the oneDNN choice
`maml_tf.main` makes for the datasource.

    python benchmarks/xla_choice.py                          # every configuration, both orders
    python benchmarks/xla_choice.py --configs=sinusoid,omniglot_5way_1shot --orders=first

Columns: the median ms per step as a graph and compiled by XLA (the times the choice is made
from), their ratio (> 1: XLA faster), the choice, and the seconds the timing took (its start-up
cost: one trace and one XLA compile more than the run would spend, and the timed steps).
Inputs are `meta_step._batch`'s random inputs at the real sizes; the flags --configs and
--orders are meta_step.py's.
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from absl import app, flags  # noqa: E402

import host  # noqa: E402
import meta_step  # noqa: E402  (its CONFIGS, inputs and learners; imports maml_tf first)

flags.DEFINE_string("choose_one", None, "internal: 'config:order'; time it here, print JSON")
FLAGS = flags.FLAGS


def _choose_one(spec):
    import maml_tf

    name, order = spec.split(":")
    config = meta_step.CONFIGS[name]
    maml_tf.choose_onednn(config[0])  # before TensorFlow loads, as maml_tf.main does
    import numpy as np

    from maml_tf import xla_choice

    support_x, support_y, query_x, query_y = meta_step._batch(config, np.random.default_rng(0))
    start = time.perf_counter()
    timing = xla_choice.time_graph_and_xla(
        lambda jit_compile: meta_step._learner(config, order == "first", jit_compile=jit_compile),
        lambda learner: learner.train_step((support_x, support_y), (query_x, query_y)))
    return {"graph_ms": 1000 * timing.graph_seconds,
            "xla_ms": None if timing.xla_seconds is None else 1000 * timing.xla_seconds,
            "use_xla": timing.use_xla, "error": timing.error, "seconds": time.perf_counter() - start}


def main(argv):
    del argv
    if FLAGS.choose_one:
        meta_step.print_result(_choose_one(FLAGS.choose_one))
        return
    print(f"CPU: {host.describe()}; load average at start {os.getloadavg()[0]:.1f}\n", flush=True)
    print("| configuration | order | graph median ms | XLA median ms | graph / XLA | chosen | timing took s |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            r = meta_step._run_json([f"--choose_one={name}:{order}"], script=__file__)
            if r is None:
                print(f"| {name} | {order} | failed | | | | |", flush=True)
                continue
            xla = "failed: " + r["error"][:60] if r["xla_ms"] is None else f"{r['xla_ms']:.1f}"
            ratio = "-" if r["xla_ms"] is None else f"{r['graph_ms'] / r['xla_ms']:.2f}x"
            print(f"| {name} | {order} | {r['graph_ms']:.1f} | {xla} | {ratio} | "
                  f"{'XLA' if r['use_xla'] else 'graphs'} | {r['seconds']:.1f} |", flush=True)
    print(f"\nLoad average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    app.run(main)
