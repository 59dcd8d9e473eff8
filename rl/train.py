"""Train MAML-TRPO or a baseline policy.

    python -m rl.train --flagfile=flags/rl_point.flags

Modes: maml (the paper's method), pretrain (policy trained on all tasks without
adaptation, the original's use_maml=False), oracle (TRPO on the env whose
observation includes the goal), random (just save the initial policy).
Re-running the same command resumes from the last checkpoint in --logdir.
"""
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "point", "Task family: point (2D navigation), cheetah_vel, cheetah_dir, "
                    "ant_vel, ant_dir (MuJoCo locomotion).")
flags.DEFINE_string("mode", "maml", "maml | pretrain | oracle | random.")
flags.DEFINE_string("logdir", None, "Run directory (checkpoints, progress.csv, TensorBoard).")
flags.DEFINE_float("fast_lr", 0.1, "Inner (adaptation) step size alpha.")
flags.DEFINE_integer("meta_batch_size", 40, "Tasks per meta-iteration.")
flags.DEFINE_integer("fast_batch_size", 20, "Trajectories per task for each step.")
flags.DEFINE_integer("max_path_length", 100, "Horizon.")
flags.DEFINE_integer("n_itr", 100, "Meta-iterations.")
flags.DEFINE_float("max_kl", 0.01, "TRPO KL bound delta (the original's meta step_size).")
flags.DEFINE_float("discount", 0.99, "Discount gamma.")
flags.DEFINE_float("gae_lambda", 1.0, "GAE lambda.")
flags.DEFINE_integer("seed", 1, "Seed for the policy init, tasks and action noise.")
flags.DEFINE_list("hidden_sizes", ["100", "100"], "Hidden layer sizes.")
flags.DEFINE_string("hidden_activation", "relu", "relu | tanh.")
flags.DEFINE_integer("cg_iters", 10, "Conjugate-gradient iterations.")
flags.DEFINE_float("cg_damping", 1e-5, "Damping added to each Hessian-vector product.")
flags.DEFINE_float("hvp_base_eps", 1.0, "Finite-difference HVP base epsilon (original's effective value 1).")
flags.DEFINE_float("pretrain_lr", 1e-3, "Adam learning rate of --mode=pretrain.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
flags.DEFINE_integer("sampler_workers", 0,
                     "MuJoCo envs: step them in this many worker processes (0 = in this process; "
                     "2 pays on an idle 2-core machine, not on a loaded one).")
flags.DEFINE_integer("collector_workers", 1,
                     "With --batch_in_steps: keep the paths rllab's parallel collector with this many "
                     "workers (its n_parallel) keeps, i.e. also those still running when the step budget "
                     "is reached. 1 (one sampler) is what produced the paper's results; the released "
                     "MuJoCo launch scripts' n_parallel=8 is --collector_workers=8 (27 paths of 200 "
                     "steps per task instead of 20).")
flags.DEFINE_bool("batch_in_steps", True,
                  "Count each task's batch in steps like rllab (whole paths until fast_batch_size * "
                  "max_path_length steps; early-terminating paths give more paths); "
                  "false = exactly fast_batch_size paths.")


def validate(f):
    """Return a one-line error message for bad flags, or None."""
    modes = ("maml", "pretrain", "oracle", "random")
    if not f.logdir:
        return "--logdir is required"
    envs = ("point", "cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir")
    if f.env not in envs:
        return f"--env={f.env!r} is not supported (supported: {', '.join(envs)})"
    if f.mode not in modes:
        return f"--mode={f.mode!r} must be one of {', '.join(modes)}"
    if f.collector_workers < 1:
        return f"--collector_workers must be >= 1 (got {f.collector_workers})"
    if f.collector_workers > 1 and not f.batch_in_steps:
        return "--collector_workers > 1 needs --batch_in_steps (it emulates a step budget)"
    if f.sampler_workers < 0:
        return f"--sampler_workers must be >= 0 (got {f.sampler_workers})"
    for name in ("meta_batch_size", "fast_batch_size", "max_path_length", "cg_iters", "keep_checkpoints"):
        if getattr(f, name) < 1:
            return f"--{name} must be >= 1 (got {getattr(f, name)})"
    if f.n_itr < 0:
        return f"--n_itr must be >= 0 (got {f.n_itr})"
    for name in ("fast_lr", "max_kl", "hvp_base_eps", "pretrain_lr"):
        if not getattr(f, name) > 0:
            return f"--{name} must be > 0 (got {getattr(f, name)})"
    if not 0 < f.discount <= 1:
        return f"--discount must be in (0, 1] (got {f.discount})"
    if not 0 <= f.gae_lambda <= 1:
        return f"--gae_lambda must be in [0, 1] (got {f.gae_lambda})"
    if f.cg_damping < 0:
        return f"--cg_damping must be >= 0 (got {f.cg_damping})"
    try:
        sizes = [int(s) for s in f.hidden_sizes]
    except ValueError:
        return f"--hidden_sizes must be comma-separated integers (got {','.join(f.hidden_sizes)})"
    if not sizes or min(sizes) < 1:
        return f"--hidden_sizes must be positive integers (got {','.join(f.hidden_sizes)})"
    if f.hidden_activation not in ("relu", "tanh"):
        return f"--hidden_activation must be relu or tanh (got {f.hidden_activation!r})"
    return None


def config_from_flags(f):
    names = ("env", "mode", "fast_lr", "meta_batch_size", "fast_batch_size", "max_path_length", "n_itr",
             "max_kl", "discount", "gae_lambda", "seed", "hidden_activation", "cg_iters", "cg_damping",
             "hvp_base_eps", "pretrain_lr", "keep_checkpoints", "batch_in_steps", "collector_workers",
             "sampler_workers")
    config = {n: getattr(f, n) for n in names}
    config["hidden_sizes"] = [int(s) for s in f.hidden_sizes]
    return config


def main(argv):
    if len(argv) > 1:
        sys.exit(f"rl.train: error: unexpected arguments {' '.join(argv[1:])}")
    error = validate(FLAGS)
    if error:
        sys.exit(f"rl.train: error: {error}")
    from rl.run_io import ConfigMismatch
    from rl.trainer import run
    try:
        run(config_from_flags(FLAGS), os.path.expanduser(FLAGS.logdir))
    except ConfigMismatch as e:
        sys.exit(f"rl.train: error: {e}")


if __name__ == "__main__":
    app.run(main)
