"""Evaluation driver: run directories -> per-step mean returns and CSV rows (no flags).

Summary CSV columns (one row per method and step):
    method,task,step,mean_return,stderr,num_tasks,num_trajs,fast_lr
mean_return = mean over test tasks of each task's mean undiscounted return;
stderr = sample std over tasks / sqrt(num_tasks).
"""
import os

# The original test scripts (maml_examples/test_maml_*.py), per env: numpy seed of the
# 40 test tasks, trajectories per task per step (batch_size / horizon: 4000 / 100 for
# the point, 4000 / 200 or 8000 / 200 for MuJoCo), and the step size of the later
# steps relative to alpha (VPG's learning_rate / init_learning_rate: 0.5; 0.01 in
# test_maml_ant_direc.py). collector_workers=1: the paper's results (the original repo's
# icml/*.pkl, April 2017) were sampled with one vectorized sampler; the released test
# scripts' n_parallel=4 would keep 23 paths of a 4000-step MuJoCo batch (--collector_workers=4).
PROTOCOLS = {
    "point": dict(task_seed=1, num_trajs=40, later_lr_scale=0.5, collector_workers=1),
    "cheetah_vel": dict(task_seed=1, num_trajs=20, later_lr_scale=0.5, collector_workers=1),
    "cheetah_dir": dict(task_seed=1, num_trajs=20, later_lr_scale=0.5, collector_workers=1),
    "ant_vel": dict(task_seed=1, num_trajs=20, later_lr_scale=0.5, collector_workers=1),
    "ant_dir": dict(task_seed=2, num_trajs=40, later_lr_scale=0.01, collector_workers=1),
}

COLUMNS = ["method", "task", "step", "mean_return", "stderr", "num_tasks", "num_trajs", "fast_lr"]


def parse_runs(specs):
    runs = []
    for spec in specs:
        method, sep, logdir = spec.partition(":")
        if not sep or not method or not logdir:
            raise ValueError(f"--run={spec!r} must look like method:logdir")
        runs.append((method, os.path.expanduser(logdir)))
    return runs


def protocol(logdir, **overrides):
    """The run's env test protocol (PROTOCOLS) with the non-None `overrides` applied."""
    from rl import run_io
    env = run_io.read_config(logdir)["env"]
    return dict(PROTOCOLS.get(env, PROTOCOLS["point"]), **{k: v for k, v in overrides.items() if v is not None})


def evaluate_run(logdir, *, num_tasks, task_seed, num_trajs, num_steps, fast_lr, seed, batch_in_steps=True,
                 later_lr_scale=0.5, collector_workers=1):
    """[num_tasks, steps + 1] mean returns of the run's latest checkpoint, and the step size used."""
    import numpy as np
    from rl import run_io
    from rl.adaptation import adapt_and_evaluate
    from rl.envs import make_vec_env, paper_test_tasks
    from rl.policy import build_policy

    config = run_io.read_config(logdir)
    model = build_policy(config["obs_dim"], config["act_dim"], config["hidden_sizes"],
                         config["hidden_activation"])
    run_io.RunState(logdir, model).restore(require=True)
    lr = config["fast_lr"] if fast_lr is None else fast_lr
    steps = 0 if config["oracle"] else num_steps
    lr = 0.0 if config["oracle"] else lr  # the original evaluated the oracle with step size 0
    vec_env = make_vec_env(config["env"], num_tasks * num_trajs, oracle=config["oracle"], seed=seed)
    try:
        returns = adapt_and_evaluate(
            [v.numpy() for v in model.trainable_variables], paper_test_tasks(config["env"], num_tasks, task_seed),
            vec_env, num_trajs=num_trajs, horizon=config["max_path_length"], fast_lr=lr, num_steps=steps,
            rng=np.random.default_rng(seed), activation=config["hidden_activation"],
            discount=config["discount"], gae_lambda=config["gae_lambda"], batch_in_steps=batch_in_steps,
            later_lr_scale=later_lr_scale, collector_workers=collector_workers)
    finally:
        if hasattr(vec_env, "close"):
            vec_env.close()
    return returns, lr, config["env"]


def summary_rows(method, env, returns, num_trajs, lr):
    import numpy as np
    n = returns.shape[0]
    rows = []
    for step in range(returns.shape[1]):
        col = returns[:, step]
        stderr = col.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        rows.append([method, env, step, f"{col.mean():.4f}", f"{stderr:.4f}", n, num_trajs, lr])
    return rows


def markdown_table(summary):
    header, rows = summary[0], summary[1:]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
