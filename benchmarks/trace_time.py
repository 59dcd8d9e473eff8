"""What tracing costs before the first step, two comparisons (`--compare`):

- `autograph`: our compiled functions traced with AutoGraph off (`tf.function(...,
  autograph=False)`, maml_tf's and rl's setting) against on (TensorFlow's default);
- `loop`: the evaluation with its inner steps 2..n in a `tf.while_loop` (`maml.score_adaptation`,
  `MetaLearner.evaluate`'s path) against every step unrolled (`MetaLearner.adapt_tasks`).

    python benchmarks/trace_time.py                                   # every configuration, both orders
    python benchmarks/trace_time.py --configs=omniglot_5way_1shot --orders=first --repeats=2
    python benchmarks/trace_time.py --compare=loop --configs=omniglot_5way_1shot,miniimagenet_5way_1shot

Our steps hold no data-dependent Python control flow (every loop runs over static shapes), so
AutoGraph's source conversion of every function they call changes no graph, only how long it
takes to build. Each (configuration, order, part, setting) runs in a fresh process (AutoGraph caches
its conversions per process, so a part traced after another would find them made), `--repeats`
times alternating the two settings, with the oneDNN choice `maml_tf.main` makes for the
datasource. The parts: the first lean `MetaLearner.train_step` (as training calls it;
`autograph` only) and the first `evaluate` of the test's `--eval_steps` inner steps (on
`--eval_tasks` tasks), each minus the median of `--calls` further calls, on `meta_step._batch`'s
random inputs of the real sizes. So a cell is tracing, graph optimisation and the first
execution's one-time costs (oneDNN primitives, allocator growth), not the step; that median (the
step's own time) is printed for `loop`, whose graph runs differently too. AutoGraph "on"
rebuilds the functions as TensorFlow builds them by default; the
XLA-compiled batch norm inside (MiniImagenet) stays off. A worker reports the setting its
function was traced with (AutoGraph's flag, a While op in the graph) and the run stops if it is
not the one asked for. Medians; second / first setting > 1: the first (ours) starts sooner. The
flags --configs and --orders are meta_step.py's.
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

flags.DEFINE_enum("compare", "autograph", ["autograph", "loop"],
                  "autograph: AutoGraph off against on; loop: the evaluation's while loop against its steps unrolled")
flags.DEFINE_integer("repeats", 2, "pairs of fresh processes (one per setting) per configuration and order")
flags.DEFINE_integer("eval_steps", 10, "inner steps of the timed evaluation (the original's test: 10)")
flags.DEFINE_integer("eval_tasks", 0, "tasks per timed evaluation call (0: the configuration's meta-batch; the "
                     "test's default, --test_tasks_per_call, is 1)")
flags.DEFINE_integer("calls", 3, "calls after the first; their median is the step's own time")
flags.DEFINE_string("time_one", None, "internal: 'config:order:part:setting'; time it here, print JSON")
FLAGS = flags.FLAGS
SETTINGS = {"autograph": ("off", "on"), "loop": ("loop", "unrolled")}
PARTS = {"autograph": ("train", "evaluate"), "loop": ("evaluate",)}


def _seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _time_one(spec):
    """Seconds of the first call of one part beyond the median of the next `--calls`, that
    median, and the setting the function was traced with."""
    import maml_tf

    name, order, part, setting = spec.split(":")
    config = meta_step.CONFIGS[name]
    maml_tf.choose_onednn(config[0])  # before TensorFlow loads, as maml_tf.main does
    import numpy as np
    import tensorflow as tf

    batch = meta_step._batch(config, np.random.default_rng(0))
    if part == "evaluate" and FLAGS.eval_tasks:
        batch = tuple(array[:FLAGS.eval_tasks] for array in batch)
    learner = meta_step._learner(config, order == "first")
    if setting == "on":  # TensorFlow's default, as the steps were built before
        learner.train_step = tf.function(learner._train_step, jit_compile=learner.jit_compile)
        learner._compiled_evaluate_tasks = tf.function(learner.evaluate_tasks, jit_compile=learner.jit_compile)
    if setting == "unrolled":
        learner._compiled_evaluate_tasks = tf.function(learner.unrolled_evaluate_tasks, jit_compile=learner.jit_compile,
                                                       autograph=False)
    if part == "train":
        function, times = learner.train_step, [_seconds(lambda: meta_step._step_seconds(learner, batch, False))
                                                for _ in range(1 + FLAGS.calls)]
    else:
        function, times = learner._compiled_evaluate_tasks, [
            _seconds(lambda: learner.evaluate(batch[:2], batch[2:], FLAGS.eval_steps)) for _ in range(1 + FLAGS.calls)]
    step = statistics.median(times[1:])
    looped = None
    if part == "evaluate":  # the function the calls above traced (same arguments: no new trace)
        weights = [tf.convert_to_tensor(v) for v in learner.variables]
        graph = function.get_concrete_function(weights, batch[:2], batch[2:], FLAGS.eval_steps).graph
        looped = any(op.type in ("While", "StatelessWhile") for op in graph.get_operations())
    return {"seconds": times[0] - step, "step_seconds": step, "autograph": function._autograph,
            "looped": looped}


def _traced_as_asked(result, setting):
    """Whether a worker's function was traced with the setting it was asked for."""
    if setting in ("off", "on"):
        return result["autograph"] == (setting == "on")
    return result["autograph"] is False and result["looped"] == (setting == "loop")


def main(argv):
    del argv
    if FLAGS.time_one:
        meta_step.print_result(_time_one(FLAGS.time_one))
        return
    print(f"CPU: {host.describe()}; {FLAGS.repeats} pairs of fresh processes per part and row", flush=True)
    if set(FLAGS.configs) - set(meta_step.CONFIGS) or set(FLAGS.orders) - {"first", "second"}:
        raise app.UsageError(f"--configs from {list(meta_step.CONFIGS)}, --orders from ['second', 'first']")
    settings, parts = SETTINGS[FLAGS.compare], PARTS[FLAGS.compare]
    rows = []
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            times = {(s, part): [] for s in settings for part in parts}
            steps = {s: [] for s in settings}
            for _ in range(FLAGS.repeats):
                for part in parts:
                    for setting in settings:
                        result = meta_step._run_json([f"--time_one={name}:{order}:{part}:{setting}",
                                                      f"--eval_steps={FLAGS.eval_steps}",
                                                      f"--eval_tasks={FLAGS.eval_tasks}", f"--calls={FLAGS.calls}"],
                                                     __file__)
                        if result is None or not _traced_as_asked(result, setting):
                            raise RuntimeError(f"{name} {order} {part} {FLAGS.compare} {setting}: "
                                               f"{'failed (its error is above)' if result is None else 'not taken'}")
                        times[setting, part].append(result["seconds"])
                        steps[setting].append(result["step_seconds"])
            cells = []
            for part in parts:
                ours, other = (statistics.median(times[s, part]) for s in settings)
                cells.append(f"{ours:.1f} | {other:.1f} | {other / ours:.2f}x")
            if FLAGS.compare == "loop":
                ours, other = (1000 * statistics.median(steps[s]) for s in settings)
                cells.append(f"{ours:.1f} | {other:.1f} | {other / ours:.2f}x")
            row = f"| {name} | {order} | " + " | ".join(cells) + " |"
            print(row, flush=True)
            rows.append(row)
    if FLAGS.compare == "autograph":
        print(f"\n| configuration | order | first lean train_step, AutoGraph off s | on s | on / off | "
              f"first {FLAGS.eval_steps}-step evaluate, off s | on s | on / off |\n|---|---|---|---|---|---|---|---|")
    else:
        print(f"\n| configuration | order | first {FLAGS.eval_steps}-step evaluate, loop s | unrolled s | "
              f"unrolled / loop | then per call, loop ms | unrolled ms | unrolled / loop |\n"
              f"|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
