"""Import the authors' released TF1 MiniImagenet 5-way 1-shot checkpoint.

    python -m maml_tf.import_original --checkpoint=../shared/data/original_checkpoint/model59000 --logdir=LOGDIR
    python -m maml_tf.main --flagfile=flags/miniimagenet_1shot_test.flags --logdir=LOGDIR --data_dir=DATA

The weights land in LOGDIR/<run name of the paper's 5-way 1-shot command> as our checkpoint
`model-<iteration>` (with fresh optimiser state), so the paper's command with --train=False
evaluates them. The paper reports 48.70 +- 1.84 % for this model.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from report import cli  # noqa: E402
from report.console import exit_with_error  # noqa: E402

from maml_tf.original_checkpoint import import_checkpoint  # noqa: E402

flags.DEFINE_string("checkpoint", None, "prefix of the TF1 checkpoint, e.g. .../model59000 (files .index and .data-*)")
flags.DEFINE_string("logdir", None, "log directory of the run to create (the --logdir you will test with)")
flags.DEFINE_bool("overwrite", False, "replace an existing checkpoint of the same iteration")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from absl import logging

    logging.set_verbosity(logging.WARNING)
    for name in ("checkpoint", "logdir"):
        if not getattr(FLAGS, name):
            exit_with_error("maml_tf.import_original", f"--{name} is required")
    from maml_tf.checkpoints import CheckpointWriteError, NonFiniteWeightsError

    try:
        run_dir, iteration, released = import_checkpoint(FLAGS.checkpoint, FLAGS.logdir, FLAGS.overwrite)
    except (ValueError, OSError, CheckpointWriteError, NonFiniteWeightsError) as e:
        exit_with_error("maml_tf.import_original", str(e) if not isinstance(e, OSError) or not e.filename
                        else f"{e.strerror or e} ({e.filename})")
    print(f"Imported {FLAGS.checkpoint} as {run_dir}/model-{iteration}")
    if not released:
        print("Not the authors' released files (their sha256 differ from ../shared/data/original_checkpoint's): "
              "imported as a TF1 checkpoint of the paper's network, and report.compare says so")
    print(f"Evaluate: python -m maml_tf.main --flagfile=flags/miniimagenet_1shot_test.flags --logdir={FLAGS.logdir} "
          f"--data_dir=DATA")


if __name__ == "__main__":
    cli.run(main, path_flags=("checkpoint", "logdir"))
