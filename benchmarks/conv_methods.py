"""Does `--conv_method=auto` pick well on this host? One meta-step per convolution method,
alternating in one process on the same batch, against `auto`'s size rule.

    python benchmarks/conv_methods.py                          # Omniglot configurations, ~7 minutes
    python benchmarks/conv_methods.py --configs=miniimagenet_5way_1shot --rounds=3
    python benchmarks/conv_methods.py --xla                    # the steps compiled by XLA

Each method of `batched_forward.CONV_METHODS` runs every per-task convolution of the network
one way ('grouped' is left out under XLA, which recompiles it at every step); 'calibrate' is
what `--conv_method=calibrate` chose at start on this host (its choice is printed); 'auto, first
step per task' is `auto` with the kernels broadcast per task before the first inner step
(`MetaLearner(shared_first_step=False)`, the code before `SharedKernel`). In every other
row the first step's support convolutions are shared, so the methods differ in the query pass
and the later steps. The step
is `MetaLearner.train_step` scoring every inner step, on random inputs of the configuration's
real sizes (`meta_step.CONFIGS`, `meta_step._batch`), as `benchmarks/meta_step.py` times it.
Prints a markdown table; `auto / method` > 1 means the method beats the rule here. The flags
are meta_step.py's (--configs, --orders, --rounds, --xla, --max_isa; the others are ignored here).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from absl import app, flags  # noqa: E402

import meta_step  # noqa: E402  (its CONFIGS, inputs, and the flags reused here: --configs, --orders, --rounds, --xla, --max_isa)

CONV_CONFIGS = meta_step.CONV_CONFIGS
FLAGS = flags.FLAGS
FLAGS.set_default("configs", CONV_CONFIGS[:3])
FLAGS.set_default("rounds", 8)


def _learners(config, first_order, jit_compile):
    """{method: MetaLearner} from the same seeded weights; 'calibrate' holds calibrate_convs' choice."""
    from maml_tf import batched_forward

    _, n, tasks, k, q, _, _, _ = config
    methods = [m for m in batched_forward.CONV_METHODS if not (jit_compile and m == "grouped")]
    learners = {method: meta_step._learner(config, first_order, jit_compile=jit_compile, conv=method)
                for method in methods}
    chosen = batched_forward.calibrate_convs(learners["auto"].model, tasks, (n * k, n * q), jit_compile=jit_compile)
    learners["calibrate"] = meta_step._learner(config, first_order, jit_compile=jit_compile, conv=chosen)
    # auto as it was before the first step's support pass was shared (`SharedKernel`).
    learners["auto, first step per task"] = meta_step._learner(config, first_order, jit_compile=jit_compile,
                                                               shared_first_step=False)
    return learners, chosen


def main(argv):
    del argv
    import numpy as np

    meta_step.begin_against_auto_run(FLAGS.configs, CONV_CONFIGS, FLAGS.xla, FLAGS.rounds)
    rows = []
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            batch = meta_step._batch(meta_step.CONFIGS[name], np.random.default_rng(0))
            learners, chosen = _learners(meta_step.CONFIGS[name], order == "first", FLAGS.xla)
            try:
                times = meta_step.alternating_step_seconds(learners, batch, FLAGS.rounds)
            except ValueError as error:  # MetaLearner's one-line refusal (XLA, second order through max-pool)
                print(f"{name} {order}: refused: {meta_step.failure_reason(error)}", flush=True)
                continue
            print(f"{name} {order}: calibrate chose {chosen}", flush=True)
            rows += meta_step.against_auto_rows(name, order, times)
    print("\n| configuration | order | method | median / min ms | auto / method |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
