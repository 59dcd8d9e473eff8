"""Does `MetaLearner(dense='auto')` pick well on this host? One meta-step with the adapted dense
kernels materialised per task ([tasks, in, out]) and one with them kept factored
(`batched_forward.LowRankKernel`), alternating in one process on the same batch, against `auto`.

    python benchmarks/dense_methods.py                 # the sinusoid and Omniglot non-conv, ~2 minutes
    python benchmarks/dense_methods.py --xla           # the steps compiled by XLA

The step is `MetaLearner.train_step` scoring every inner step, on random inputs of the
configuration's real sizes (`meta_step.CONFIGS`, `meta_step._batch`), as `benchmarks/meta_step.py`
times it. Prints a markdown table; `auto / method` > 1 means the method beats the rule here.
The flags are meta_step.py's (--configs, --orders, --rounds, --xla, --max_isa; the others are ignored here).
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from absl import app, flags  # noqa: E402

import meta_step  # noqa: E402  (its CONFIGS, inputs, and the flags reused here: --configs, --orders, --rounds, --xla, --max_isa)

DENSE_CONFIGS = ["sinusoid", "omniglot_nonconv_5way_1shot"]
FLAGS = flags.FLAGS
FLAGS.set_default("configs", DENSE_CONFIGS)
FLAGS.set_default("rounds", 15)


def _learners(config, first_order, jit_compile):
    """{method: MetaLearner} from the same seeded weights, one per `meta_learner.DENSE_METHODS`."""
    from maml_tf.meta_learner import DENSE_METHODS

    return {method: meta_step._learner(config, first_order, jit_compile=jit_compile, dense=method)
            for method in DENSE_METHODS}


def main(argv):
    del argv
    import numpy as np

    meta_step.begin_against_auto_run(FLAGS.configs, DENSE_CONFIGS, FLAGS.xla, FLAGS.rounds)
    rows = []
    for name in FLAGS.configs:
        config = meta_step.CONFIGS[name]
        for order in FLAGS.orders:
            batch = meta_step._batch(config, np.random.default_rng(0))
            learners = _learners(config, order == "first", FLAGS.xla)
            times = meta_step.alternating_step_seconds(learners, batch, FLAGS.rounds)
            factored = learners["auto"].low_rank_kernels(config[1] * config[3], config[5])
            print(f"{name} {order}: auto factors kernels {list(factored)} of the trainable variables", flush=True)
            rows += meta_step.against_auto_rows(name, order, times)
    print("\n| configuration | order | dense kernels | median / min ms | auto / method |\n|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    app.run(main)
