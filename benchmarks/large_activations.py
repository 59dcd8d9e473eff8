"""Do the choices for large activations pick well on this host? `auto` (the defaults) against
each choice turned the other way, alternating in one process on the same batch:

- batch norm as graph ops everywhere / XLA-compiled everywhere (`auto` compiles it from
  `batched_forward.BATCH_NORM_XLA_MIN_ELEMENTS` per task: MiniImagenet's first two layers on
  the query set);
- per-task convolution outputs stacked into one tensor everywhere / kept as per-task lists
  everywhere (`auto` keeps them apart from `batched_forward.TASK_LIST_MIN_ELEMENTS` per task:
  MiniImagenet's large layers; every Omniglot output is stacked);
- ReLU before max-pool, as the Keras model (`auto` pools first: `MAX_POOL_BEFORE_RELU`; this
  also keeps batch norm before max-pool, which then no longer follows it directly);
- max-pool after batch norm, as the Keras model (`auto` pools first and normalises the pooled
  activation with the whole one's statistics: `MAX_POOL_BEFORE_BATCH_NORM`).

    python benchmarks/large_activations.py                              # MiniImagenet, ~25 minutes
    python benchmarks/large_activations.py --configs=omniglot_5way_1shot --rounds=8

The step is `MetaLearner.train_step` scoring every inner step, on random inputs of the
configuration's real sizes (`meta_step.CONFIGS`, `meta_step._batch`), as `benchmarks/meta_step.py`
times it; the first call (trace and compile) is timed too, as XLA's compile time is what the batch
norm rule saves on small activations. Prints a markdown table; `auto / variant` > 1 means the
variant beats the defaults here. The flags are meta_step.py's (--configs, --orders, --rounds,
--max_isa; the others are ignored here).
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

CONFIGS = meta_step.CONV_CONFIGS
# variant: the batched_forward settings it changes from the defaults
VARIANTS = {
    "auto": {},
    "batch norm as graph ops everywhere": {"BATCH_NORM_XLA_MIN_ELEMENTS": float("inf")},
    "batch norm XLA-compiled everywhere": {"BATCH_NORM_XLA_MIN_ELEMENTS": 0},
    "per-task outputs stacked everywhere": {"TASK_LIST_MIN_ELEMENTS": float("inf")},
    "per-task outputs as lists everywhere": {"TASK_LIST_MIN_ELEMENTS": 0},
    "ReLU before max-pool": {"MAX_POOL_BEFORE_RELU": False},
    "max-pool after batch norm": {"MAX_POOL_BEFORE_BATCH_NORM": False},
}
FLAGS = flags.FLAGS
FLAGS.set_default("configs", CONFIGS[3:])
FLAGS.set_default("rounds", 3)


def _traced_learners(config, first_order, batch):
    """({variant: MetaLearner}, {variant: seconds of its first step}), from the same seeded
    weights, each built and traced under its own settings (read when a step is built and traced)."""
    from maml_tf import batched_forward

    defaults = {name: getattr(batched_forward, name) for settings in VARIANTS.values() for name in settings}
    learners, first_step = {}, {}
    try:
        # First an untimed one (batch norm compiled everywhere): the process's one-time costs (XLA,
        # oneDNN and tracing start-up) would otherwise fall on whichever variant is traced first.
        for variant, settings in [("warm-up", {"BATCH_NORM_XLA_MIN_ELEMENTS": 0}), *VARIANTS.items()]:
            for name, value in {**defaults, **settings}.items():
                setattr(batched_forward, name, value)
            learner = meta_step._learner(config, first_order)
            start = time.perf_counter()
            meta_step._step_seconds(learner, batch)
            if variant != "warm-up":
                learners[variant], first_step[variant] = learner, time.perf_counter() - start
    finally:
        for name, value in defaults.items():
            setattr(batched_forward, name, value)
    return learners, first_step


def main(argv):
    del argv
    import numpy as np

    meta_step.begin_against_auto_run(FLAGS.configs, CONFIGS, False, FLAGS.rounds)
    rows = []
    for name in FLAGS.configs:
        config = meta_step.CONFIGS[name]
        for order in FLAGS.orders:
            batch = meta_step._batch(config, np.random.default_rng(0))
            learners, first_step = _traced_learners(config, order == "first", batch)
            print(f"{name} {order}: first step (trace and compile) " +
                  ", ".join(f"{variant} {seconds:.1f} s" for variant, seconds in first_step.items()), flush=True)
            rows += meta_step.against_auto_rows(name, order, meta_step.alternating_step_seconds(learners, batch,
                                                                                                FLAGS.rounds))
    print("\n| configuration | order | variant | median / min ms | auto / variant |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
