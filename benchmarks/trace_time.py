"""What tracing costs before the first step: our compiled functions traced with AutoGraph off
(`tf.function(..., autograph=False)`, maml_tf's and rl's setting) against on (TensorFlow's default).

    python benchmarks/trace_time.py                                   # every configuration, both orders
    python benchmarks/trace_time.py --configs=omniglot_5way_1shot --orders=first --repeats=2

Our steps hold no data-dependent Python control flow (every loop runs over static shapes), so
AutoGraph's source conversion of every function they call changes no graph, only how long it
takes to build. Each (configuration, order, setting) runs in a fresh process (AutoGraph caches
its conversions per process), `--repeats` times alternating off and on: the first
`MetaLearner.train_step` (trace, graph optimisation and one step) and the first `evaluate` of
the test's `--eval_steps` inner steps, each minus its own second call (one step without
tracing), on `meta_step._batch`'s random inputs of the real sizes. Medians; on / off > 1: off
starts faster. The flags --configs and --orders are meta_step.py's; the others are ignored here.
"""
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from absl import app, flags  # noqa: E402

import host  # noqa: E402
import meta_step  # noqa: E402  (its CONFIGS, inputs, learners; imports maml_tf first)

flags.DEFINE_integer("repeats", 2, "pairs of fresh processes (off, on) per configuration and order")
flags.DEFINE_integer("eval_steps", 10, "inner steps of the timed evaluation (the original's test: 10)")
flags.DEFINE_string("time_one", None, "internal: 'config:order:autograph'; time it in this process, print JSON")
FLAGS = flags.FLAGS
SETTINGS = ("off", "on")


def _seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _time_one(spec):
    import numpy as np
    import tensorflow as tf

    name, order, setting = spec.split(":")
    config = meta_step.CONFIGS[name]
    batch = meta_step._batch(config, np.random.default_rng(0))
    learner = meta_step._learner(config, order == "first")
    if setting == "on":  # TensorFlow's default, as the steps were built before
        learner.train_step = tf.function(learner._train_step, jit_compile=learner.jit_compile)
        learner._compiled_adapt_tasks = tf.function(learner.adapt_tasks, jit_compile=learner.jit_compile)
    train = [_seconds(lambda: meta_step._step_seconds(learner, batch)) for _ in range(2)]
    evaluate = [_seconds(lambda: learner.evaluate(batch[:2], batch[2:], FLAGS.eval_steps)) for _ in range(2)]
    return {"train": train[0] - train[1], "evaluate": evaluate[0] - evaluate[1]}


def main(argv):
    del argv
    if FLAGS.time_one:
        print("RESULT " + json.dumps(_time_one(FLAGS.time_one)), flush=True)
        return
    print(f"CPU: {host.describe()}; {FLAGS.repeats} pairs of fresh processes per row", flush=True)
    rows = []
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            times = {(s, part): [] for s in SETTINGS for part in ("train", "evaluate")}
            for _ in range(FLAGS.repeats):
                for setting in SETTINGS:
                    result = meta_step._run_json([f"--time_one={name}:{order}:{setting}",
                                                  f"--eval_steps={FLAGS.eval_steps}"], __file__)
                    if result is None:
                        raise RuntimeError(f"{name} {order} with AutoGraph {setting} failed (its error is above)")
                    for part in ("train", "evaluate"):
                        times[setting, part].append(result[part])
            cells = []
            for part in ("train", "evaluate"):
                off, on = (statistics.median(times[s, part]) for s in SETTINGS)
                cells.append(f"{off:.1f} | {on:.1f} | {on / off:.2f}x")
            row = f"| {name} | {order} | " + " | ".join(cells) + " |"
            print(row, flush=True)
            rows.append(row)
    print(f"\n| configuration | order | first train_step, AutoGraph off s | on s | on / off | "
          f"first {FLAGS.eval_steps}-step evaluate, off s | on s | on / off |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
