"""Train MAML-TRPO or a baseline policy.

    python -m rl.train --flagfile=flags/rl_point.flags

Modes: maml (the paper's method), pretrain (policy trained on all tasks without
adaptation, the original's use_maml=False), oracle (TRPO on the env whose
observation includes the goal), random (just save the initial policy).
Re-running the same command resumes from the last checkpoint in --logdir.

Every fault ends with one line `rl.train: error: ...` (exit status 1): bad flags (checked
before anything starts), another rl.train on the same --logdir, an unwritable --logdir,
damaged files, divergence, a failed write. SIGINT / SIGTERM stop after the current iteration
is saved (one line, exit status 130 / 143); see rl/trainer.py and rl/run_io.py.

--distribute=mirrored|multi_worker (--mode=maml) splits the meta-batch across devices or
processes (rl/distributed.py); it says how to run, not what is trained, so a run may be resumed
with another replica count. With multi_worker, run the same command on every worker (each with
its TF_CONFIG); the chief writes --logdir. Every worker must start within --join_timeout (else
one line and the waiting processes are killed); before training they agree to start: a failed
start-up check of one (e.g. the chief's locked --logdir) or a worker whose training flags differ
from the chief's ends every process with one line. A lost worker ends the others with one line.
"""
import os
import sys

# TensorFlow's C++ INFO and WARNING lines (CPU features, an op's failure before the error it
# raises) stay off the terminal, as in maml_tf.main: a failure is one line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from report import distribution  # noqa: E402
from rl import config as cfg  # noqa: E402

FLAGS = flags.FLAGS
cfg.define_train_flags(flags)


def validate(f):
    """Return a one-line error message for bad flags, or None."""
    if not f.logdir:
        return "--logdir is required"
    error = cfg.setting_error(f)
    if error:
        return error
    if f.join_timeout < 0:
        return f"--join_timeout must be >= 0 (got {f.join_timeout}; 0 waits forever)"
    if f.distribute != "none" and f.mode != "maml":
        return f"--distribute={f.distribute} is for --mode=maml (got --mode={f.mode})"
    if f.jit_compile and f.mode not in ("maml", "oracle"):
        return f"--jit_compile compiles the TRPO step, which --mode={f.mode} does not take (maml and oracle do)"
    if f.distribute != "none" and f.jit_compile:
        return f"--jit_compile is not supported with --distribute={f.distribute} (it runs its gradients as graphs)"
    return distribution.flag_error(f.distribute, f.cpu_replicas)


def make_strategy(f):
    """(the tf.distribute strategy of --distribute, None for none; or None and a one-line error).
    Checks that --meta_batch_size splits evenly across its replicas. multi_worker: if a worker
    of TF_CONFIG has not started within --join_timeout, a watchdog prints one line and kills
    this process (TensorFlow would wait forever)."""
    try:
        strategy = distribution.make_strategy(
            f.distribute, f.cpu_replicas, f.join_timeout,
            join_timeout_message=distribution.join_timeout_line("rl.train", f.join_timeout))
        distribution.per_replica_count(f.meta_batch_size, strategy, "meta_batch_size")
    except ValueError as e:
        return None, str(e)
    return strategy, None


def main(argv):
    """The strategy first (multi_worker must exist before any other TensorFlow op), then the
    run; every fault one line. A collective that fails because another process of a
    multi-worker job is gone is one line too (`report.distribution.is_lost_contact`); any other
    TensorFlow error is a bug and keeps its traceback."""
    from absl import logging
    from report.console import exit_with_error
    if len(argv) > 1:
        exit_with_error("rl.train", f"unexpected arguments {' '.join(argv[1:])}")
    error = validate(FLAGS)
    if error:
        exit_with_error("rl.train", error)
    strategy = None
    if FLAGS.distribute != "none":
        distribution.quiet_lost_worker_logs(FLAGS.distribute)
        strategy, error = make_strategy(FLAGS)
        if error:
            exit_with_error("rl.train", error)
        logging.info("Devices: %s", distribution.describe(strategy))
    from report.run_lock import RunLockedError
    from rl.run_io import RunError
    from rl.trainer import TrainingStopped, run
    try:
        run(cfg.from_flags(FLAGS), os.path.expanduser(FLAGS.logdir), strategy)
    except TrainingStopped as e:
        print(f"rl.train: {e.message}", file=sys.stderr)
        sys.exit(e.exit_status)
    except (RunError, RunLockedError, OSError, distribution.JobStartError) as e:
        exit_with_error("rl.train", str(e))
    except Exception as e:  # a collective that failed: another process of the job is gone
        if not distribution.is_lost_contact(e, FLAGS.distribute):
            raise
        exit_with_error("rl.train", distribution.lost_contact_message(e))


if __name__ == "__main__":
    from report.cli import run as run_app
    run_app(main, path_flags=["logdir"])
