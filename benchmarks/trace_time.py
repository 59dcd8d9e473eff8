"""What tracing costs before the first step: our compiled functions traced with AutoGraph off
(`tf.function(..., autograph=False)`, maml_tf's and rl's setting) against on (TensorFlow's default).

    python benchmarks/trace_time.py                                   # every configuration, both orders
    python benchmarks/trace_time.py --configs=omniglot_5way_1shot --orders=first --repeats=2

Our steps hold no data-dependent Python control flow (every loop runs over static shapes), so
AutoGraph's source conversion of every function they call changes no graph, only how long it
takes to build. Each (configuration, order, part, setting) runs in a fresh process (AutoGraph caches
its conversions per process, so a part traced after another would find them made), `--repeats`
times alternating off and on, with the oneDNN choice `maml_tf.main` makes for the datasource. The
parts: the first lean `MetaLearner.train_step` (as training calls it) and the first `evaluate` of
the test's `--eval_steps` inner steps, each minus its own second call, on `meta_step._batch`'s
random inputs of the real sizes. So a cell is tracing, graph optimisation and the first
execution's one-time costs (oneDNN primitives, allocator growth), not the step. "On" rebuilds
these two functions as TensorFlow builds them by default; the XLA-compiled batch norm inside
(MiniImagenet) stays off. Medians; on / off > 1: off starts sooner. The flags --configs and
--orders are meta_step.py's.
"""
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
flags.DEFINE_string("time_one", None, "internal: 'config:order:part:setting'; time it here, print JSON")
FLAGS = flags.FLAGS
SETTINGS = ("off", "on")
PARTS = ("train", "evaluate")


def _seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _time_one(spec):
    """Seconds of the first call of one part beyond its second, and whether AutoGraph was on."""
    import maml_tf

    name, order, part, setting = spec.split(":")
    config = meta_step.CONFIGS[name]
    maml_tf.choose_onednn(config[0])  # before TensorFlow loads, as maml_tf.main does
    import numpy as np
    import tensorflow as tf

    batch = meta_step._batch(config, np.random.default_rng(0))
    learner = meta_step._learner(config, order == "first")
    if setting == "on":  # TensorFlow's default, as the steps were built before
        learner.train_step = tf.function(learner._train_step, jit_compile=learner.jit_compile)
        learner._compiled_adapt_tasks = tf.function(learner.adapt_tasks, jit_compile=learner.jit_compile)
    if part == "train":
        function, times = learner.train_step, [_seconds(lambda: meta_step._step_seconds(learner, batch, False))
                                                for _ in range(2)]
    else:
        function, times = learner._compiled_adapt_tasks, [
            _seconds(lambda: learner.evaluate(batch[:2], batch[2:], FLAGS.eval_steps)) for _ in range(2)]
    return {"seconds": times[0] - times[1], "autograph": function._autograph}


def main(argv):
    del argv
    if FLAGS.time_one:
        meta_step.print_result(_time_one(FLAGS.time_one))
        return
    print(f"CPU: {host.describe()}; {FLAGS.repeats} pairs of fresh processes per part and row", flush=True)
    if set(FLAGS.configs) - set(meta_step.CONFIGS) or set(FLAGS.orders) - {"first", "second"}:
        raise app.UsageError(f"--configs from {list(meta_step.CONFIGS)}, --orders from ['second', 'first']")
    rows = []
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            times = {(s, part): [] for s in SETTINGS for part in PARTS}
            for _ in range(FLAGS.repeats):
                for part in PARTS:
                    for setting in SETTINGS:
                        result = meta_step._run_json([f"--time_one={name}:{order}:{part}:{setting}",
                                                      f"--eval_steps={FLAGS.eval_steps}"], __file__)
                        if result is None or result["autograph"] != (setting == "on"):
                            raise RuntimeError(f"{name} {order} {part} with AutoGraph {setting}: "
                                               f"{'failed (its error is above)' if result is None else 'not taken'}")
                        times[setting, part].append(result["seconds"])
            cells = []
            for part in PARTS:
                off, on = (statistics.median(times[s, part]) for s in SETTINGS)
                cells.append(f"{off:.1f} | {on:.1f} | {on / off:.2f}x")
            row = f"| {name} | {order} | " + " | ".join(cells) + " |"
            print(row, flush=True)
            rows.append(row)
    print(f"\n| configuration | order | first lean train_step, AutoGraph off s | on s | on / off | "
          f"first {FLAGS.eval_steps}-step evaluate, off s | on s | on / off |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
