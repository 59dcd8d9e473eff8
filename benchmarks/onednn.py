"""What maml_tf's oneDNN default (maml_tf/__init__.py) is worth on this host: our meta-step with
TensorFlow's oneDNN kernels on (TF_ENABLE_ONEDNN_OPTS=1) against off (Eigen's kernels, TensorFlow's
own default on CPUs without AVX-512 VNNI, BF16 or AMX). `maml_tf.choose_onednn` takes oneDNN for
the image datasets and Eigen's kernels for the sinusoid, from these figures.

    python benchmarks/onednn.py                                   # every configuration, both orders
    python benchmarks/onednn.py --configs=miniimagenet_5way_1shot --orders=first --rounds=3 --repeats=2

TensorFlow reads the variable once, when it loads, so the two settings cannot alternate in one
process: each (configuration, order) runs `--repeats` pairs of fresh processes, off then on, each
timing `--rounds` full steps (`MetaLearner.train_step` scoring every inner step, after two
warm-up steps, on `meta_step._batch`'s random inputs of the real sizes). The table gives each
setting's median over all its timed steps, the minimum, and off / on (> 1: oneDNN is faster).
The flags --configs, --orders and --rounds are meta_step.py's; the others are ignored here.
"""
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from absl import app, flags  # noqa: E402

import host  # noqa: E402
import meta_step  # noqa: E402  (its CONFIGS, inputs, learners; imports maml_tf, whose default the worker keeps or overrides)

flags.DEFINE_integer("repeats", 2, "pairs of fresh processes (off, on) per configuration and order")
flags.DEFINE_string("time_one", None, "internal: 'config:order'; time it in this process and print JSON")
FLAGS = flags.FLAGS
FLAGS.set_default("rounds", 8)
SETTINGS = ("0", "1")  # off, on


def _time_one(spec):
    import numpy as np

    name, order = spec.split(":")
    config = meta_step.CONFIGS[name]
    batch = meta_step._batch(config, np.random.default_rng(0))
    learner = meta_step._learner(config, order == "first")
    seconds = meta_step.alternating_step_seconds({"ours": learner}, batch, FLAGS.rounds)["ours"]
    return {"onednn": host.tf_onednn(), "seconds": seconds}


def _run(spec, setting):
    result = meta_step._run_json([f"--time_one={spec}", f"--rounds={FLAGS.rounds}"], __file__,
                                 TF_ENABLE_ONEDNN_OPTS=setting)
    if result is None:
        raise RuntimeError(f"{spec} with TF_ENABLE_ONEDNN_OPTS={setting} failed (its error is printed above)")
    if result["onednn"] != ("on" if setting == "1" else "off"):
        raise RuntimeError(f"TF_ENABLE_ONEDNN_OPTS={setting} left oneDNN {result['onednn']}")
    return result["seconds"]


def main(argv):
    del argv
    if FLAGS.time_one:
        meta_step.print_result(_time_one(FLAGS.time_one))
        return
    print(f"CPU: {host.describe()}; {FLAGS.repeats} pairs of processes x {FLAGS.rounds} steps per setting", flush=True)
    rows = []
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            times = {setting: [] for setting in SETTINGS}
            for _ in range(FLAGS.repeats):
                for setting in SETTINGS:
                    times[setting] += _run(f"{name}:{order}", setting)
            off, on = (1000 * statistics.median(times[s]) for s in SETTINGS)
            row = (f"| {name} | {order} | {off:.1f} / {1000 * min(times['0']):.1f} | "
                   f"{on:.1f} / {1000 * min(times['1']):.1f} | {off / on:.2f}x |")
            print(row, flush=True)
            rows.append(row)
    print("\n| configuration | order | oneDNN off median / min ms | oneDNN on median / min ms | off / on |\n"
          "|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
