"""Does batch norm's size rule pick well on this host? One meta-step with every per-task batch
norm as graph ops, one with every one XLA-compiled, and `auto` (compiled from
`batched_forward.BATCH_NORM_XLA_MIN_ELEMENTS` per task: MiniImagenet's first two layers on the
query set),
alternating in one process on the same batch.

    python benchmarks/batch_norm.py                                     # MiniImagenet, ~10 minutes
    python benchmarks/batch_norm.py --configs=omniglot_5way_1shot --rounds=8

The step is `MetaLearner.train_step` scoring every inner step, on random inputs of the
configuration's real sizes (`meta_step.CONFIGS`, `meta_step._batch`), as `benchmarks/meta_step.py`
times it; the first call (trace and compile) is timed too, as XLA's compile time is what the rule
saves on small activations. Prints a markdown table; `auto / method` > 1 means the method beats
the rule here. The flags are meta_step.py's (--configs, --orders, --rounds, --max_isa; the others
are ignored here).
"""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from absl import app, flags  # noqa: E402

import meta_step  # noqa: E402  (its CONFIGS, inputs, and the flags reused here: --configs, --orders, --rounds, --max_isa)

NORM_CONFIGS = ["omniglot_5way_1shot", "omniglot_5way_5shot", "omniglot_20way_1shot", "miniimagenet_5way_1shot",
                "miniimagenet_5way_5shot"]
FLAGS = flags.FLAGS
FLAGS.set_default("configs", NORM_CONFIGS[3:])
FLAGS.set_default("rounds", 5)


def _traced_learners(config, first_order, batch):
    """({method: MetaLearner}, {method: seconds of its first step}), from the same seeded weights,
    each traced under its own batch-norm threshold (read when a step is traced)."""
    from maml_tf import batched_forward

    thresholds = {"auto": batched_forward.BATCH_NORM_XLA_MIN_ELEMENTS, "graph ops everywhere": float("inf"),
                  "XLA everywhere": 0}
    learners, first_step = {}, {}
    try:
        # First an untimed one (XLA everywhere): the process's one-time costs (XLA, oneDNN and
        # tracing start-up) would otherwise fall on whichever method is traced first.
        for method, threshold in [("warm-up", 0), *thresholds.items()]:
            batched_forward.BATCH_NORM_XLA_MIN_ELEMENTS = threshold
            learner = meta_step._learner(config, first_order)
            start = time.perf_counter()
            meta_step._step_seconds(learner, batch)
            if method != "warm-up":
                learners[method], first_step[method] = learner, time.perf_counter() - start
    finally:
        batched_forward.BATCH_NORM_XLA_MIN_ELEMENTS = thresholds["auto"]
    return learners, first_step


def main(argv):
    del argv
    import numpy as np

    meta_step.begin_against_auto_run(FLAGS.configs, NORM_CONFIGS, False, FLAGS.rounds)
    rows = []
    for name in FLAGS.configs:
        config = meta_step.CONFIGS[name]
        for order in FLAGS.orders:
            batch = meta_step._batch(config, np.random.default_rng(0))
            learners, first_step = _traced_learners(config, order == "first", batch)
            print(f"{name} {order}: first step (trace and compile) " +
                  ", ".join(f"{method} {seconds:.1f} s" for method, seconds in first_step.items()), flush=True)
            rows += meta_step.against_auto_rows(name, order, meta_step.alternating_step_seconds(learners, batch,
                                                                                                FLAGS.rounds))
    print("\n| configuration | order | batch norm | median / min ms | auto / method |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
