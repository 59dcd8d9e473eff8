"""Evaluation driver: run directories -> per-step mean returns and CSV rows (no flags).

Summary CSV columns (one row per method and step):
    method,task,step,mean_return,stderr,num_tasks,num_trajs,fast_lr,mode,design,checkpoint,training
mean_return = mean over test tasks of each task's mean undiscounted return;
stderr = sample std over tasks / sqrt(num_tasks). The row functions here give the first eight;
rl.evaluate adds the run's mode, the evaluation's design and the checkpoint evaluated
(report.rl_results).

Options beyond the released protocol (all off by default):
  - step schedule: `first_lr_scale` scales the first step (STEP_SCHEDULES names the
    one cbfinn/maml_rl's optimizer applied from 25 Feb to 13 Apr 2017: 0.5 alpha at every step);
  - same sampling seed: every task is sampled from the same seed, as the original
    test scripts launched each task with a fixed run_experiment_lite seed;
  - init seed: a random-init run re-initialised with another seed;
  - rows per direction for the direction tasks (`direction_rows`).
"""
import os

from report.paper import RL as PAPER_RL
from report.rl_results import SUMMARY_COLUMNS

# The original test scripts (maml_examples/test_maml_*.py), per env: numpy seed of the
# 40 test tasks, trajectories per task per step (report.paper's num_trajs: the scripts'
# batch_size / horizon, 4000 / 100 for the point, 4000 / 200 or 8000 / 200 for MuJoCo),
# and the step size of the later steps relative to alpha (VPG's learning_rate /
# init_learning_rate: 0.5; 0.01 in test_maml_ant_direc.py). collector_workers=1: the paper's
# results (the original repo's icml/*.pkl, April 2017) were sampled with one vectorized
# sampler; the released test scripts' n_parallel=4 would keep 23 paths of a 4000-step MuJoCo
# batch (--collector_workers=4).
_TASK_SEED_AND_LATER_SCALE = {"point": (1, 0.5), "cheetah_vel": (1, 0.5), "cheetah_dir": (1, 0.5),
                              "ant_vel": (1, 0.5), "ant_dir": (2, 0.01)}
PROTOCOLS = {env: dict(task_seed=seed, num_trajs=PAPER_RL[env].num_trajs, later_lr_scale=scale, collector_workers=1)
             for env, (seed, scale) in _TASK_SEED_AND_LATER_SCALE.items()}

# The summary csv's header, defined with its reader in report.rl_results.
COLUMNS = SUMMARY_COLUMNS

# Named step schedules -> (first_lr_scale, later_lr_scale); None keeps the protocol's.
#   released: the released test scripts (July 2017): alpha at step 1, later_lr_scale * alpha
#     afterwards (VPG's init_learning_rate, then its tf_optimizer_args learning_rate).
#   feb2017: 0.5 alpha at every step. sandbox/rocky/tf/optimizers/first_order_optimizer.py as
#     committed from 7fe27d7 (25 Feb 2017, "ICML deadline final state") until 285393d (13 Apr
#     2017 15:19, "remove debugging code") updated the parameters by hand with
#     self.learning_rate = tf_optimizer_args['learning_rate'] on every call and never ran the
#     init_learning_rate op; every test script of 7fe27d7 passed learning_rate 0.5 * step size.
#     The icml/*.pkl results of 7fe27d7 were committed with it; those of 4d41869 (13 Apr 15:22)
#     three minutes after its removal.
STEP_SCHEDULES = {"released": None, "feb2017": (0.5, 0.5)}

# Direction tasks: task value -1 / +1 -> the label of its rows in direction_rows.
DIRECTION_ENVS = ("cheetah_dir", "ant_dir")
DIRECTIONS = ((-1.0, "backward"), (1.0, "forward"))


def parse_runs(specs):
    """[(method, logdir)] from --run=method:logdir values."""
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


def schedule_scales(name):
    """(first_lr_scale, later_lr_scale) of a STEP_SCHEDULES name (None: the protocol's)."""
    if name not in STEP_SCHEDULES:
        raise ValueError(f"unknown step schedule {name!r} (known: {', '.join(STEP_SCHEDULES)})")
    return STEP_SCHEDULES[name]


def evaluation_tasks(env, num_tasks, task_seed):
    """The tasks `evaluate_run` evaluates for env `env` (rows in this order)."""
    from rl.envs import paper_test_tasks
    return paper_test_tasks(env, num_tasks, task_seed)


def evaluate_run(logdir, *, num_tasks, task_seed, num_trajs, num_steps, fast_lr, seed, batch_in_steps=True,
                 later_lr_scale=0.5, collector_workers=1, first_lr_scale=1.0, same_sampling_seed=False,
                 init_seed=None, record=None, strategy=None, progress=None, checkpoint=None):
    """[num_tasks, steps + 1] mean returns of the run's latest checkpoint (or of `checkpoint`, a
    path `.../checkpoints/ckpt-<N>`), and the step size used.

    first_lr_scale: the first adaptation step is first_lr_scale * alpha (later ones later_lr_scale * alpha).
    same_sampling_seed: sample every task from the same seed `seed` (action noise and start
        noise), as if each task were evaluated alone (the original launched every task with the
        same run_experiment_lite seed); tasks equal to one another then give equal returns, so
        each distinct task is evaluated once. Default: all tasks at once from one stream.
    init_seed: for a run trained with mode 'random': evaluate the initial policy rl.train
        would build with --seed=init_seed instead of the checkpoint.
    record: optional list; gets `adapt_and_evaluate`'s record entries (with same_sampling_seed,
        each also names its 'task').
    strategy: a tf.distribute strategy to split the tasks over (`rl.distributed.TaskSplit`; a
        ValueError naming --num_tasks if they do not divide): each process samples and adapts
        its tasks (with its rows of the one stream's noise), each replica adapts its own; the
        returns are gathered in task order, so every process gets the whole array, equal to
        one device's (on the point task; MuJoCo start noise is per process). Not with
        same_sampling_seed or record.
    progress: optional `progress(total) -> update(done)` (e.g. `report.console.ProgressLine`'s
        constructor with its label bound): told the number of sampling passes, then called
        after each.
    """
    import numpy as np
    from rl import run_io
    from rl.adaptation import adapt_and_evaluate, compile_inner_step
    from rl.envs import make_vec_env
    from rl.policy import Policy

    config = run_io.read_config(logdir)
    if init_seed is not None and config["mode"] != "random":
        raise ValueError(f"{logdir} was trained with mode {config['mode']!r}: an init seed only "
                         "applies to a random-init run (mode 'random')")
    policy = Policy(config["obs_dim"], config["act_dim"], config["hidden_sizes"], config["hidden_activation"],
                    seed=init_seed)
    if init_seed is None:
        run_io.RunState(logdir, policy.model).restore(require=True, path=checkpoint)
    lr = config["fast_lr"] if fast_lr is None else fast_lr
    steps = 0 if config["oracle"] else num_steps
    lr = 0.0 if config["oracle"] else lr  # the original evaluated the oracle with step size 0
    tasks = evaluation_tasks(config["env"], num_tasks, task_seed)
    groups = len(np.unique(tasks, axis=0)) if same_sampling_seed and strategy is None else 1
    kwargs = dict(num_trajs=num_trajs, horizon=config["max_path_length"], fast_lr=lr, num_steps=steps,
                  discount=config["discount"], gae_lambda=config["gae_lambda"], batch_in_steps=batch_in_steps,
                  later_lr_scale=later_lr_scale, collector_workers=collector_workers, first_lr_scale=first_lr_scale,
                  inner_step=compile_inner_step(policy), on_pass=_pass_counter(progress, groups * (steps + 1)))

    def run_tasks(batch_tasks, rec=None):
        vec_env = make_vec_env(config["env"], len(batch_tasks) * num_trajs, oracle=config["oracle"], seed=seed)
        try:
            return adapt_and_evaluate(policy, batch_tasks, vec_env, rng=np.random.default_rng(seed), record=rec,
                                      **kwargs)
        finally:
            if hasattr(vec_env, "close"):
                vec_env.close()

    if strategy is not None:
        if same_sampling_seed or record is not None:
            raise ValueError("a distributed evaluation samples all tasks from one stream and keeps no record")
        from rl.distributed import TaskSplit, split_inner_step
        split = TaskSplit(strategy, len(tasks), flag="num_tasks")
        kwargs["inner_step"] = split_inner_step(split, policy)
        local = split.local(tasks)
        vec_env = make_vec_env(config["env"], len(local) * num_trajs, oracle=config["oracle"],
                               seed=seed + 1000 * split.process_index)
        try:
            rng = np.random.default_rng(seed)
            noise = split.noise(rng, num_trajs, vec_env.act_dim)
            returns = adapt_and_evaluate(policy, local, vec_env, rng=rng, noise=noise, **kwargs)
        finally:
            if hasattr(vec_env, "close"):
                vec_env.close()
        return split.gather(returns), lr, config["env"]
    if not same_sampling_seed:
        return run_tasks(tasks, rec=record), lr, config["env"]
    distinct, which = np.unique(tasks, axis=0, return_inverse=True)
    rows = []
    for task in distinct:
        rec = None if record is None else []
        rows.append(run_tasks(task[None], rec)[0])
        if record is not None:
            record.extend(dict(r, task=task) for r in rec)
    return np.stack(rows)[np.reshape(which, -1)], lr, config["env"]


def _pass_counter(progress, total):
    """A no-argument callable that reports one more finished sampling pass to `progress(total)`'s
    update, or None without `progress`."""
    if progress is None:
        return None
    update, done = progress(total), [0]

    def on_pass():
        done[0] += 1
        update(done[0])
    return on_pass


def trained_otherwise(config):
    """The `training` column of a run's rows: the settings its config.json trained with that
    differ from the paper's command for its task and mode (MAML and oracle:
    `report.paper.RL`'s flagfiles; the seed, what a resume may change, Adam's rate of
    pretraining and an oracle's unused step size aside), as `name=value (the paper's value)`,
    ';'-separated; '' for none or a mode without a paper number; `unchecked (why)` where the
    config or the flagfile cannot be read. report.compare shows them next to the paper's numbers."""
    from report import paper
    from rl.config import TRAINED_SETTINGS, TrainConfig, command_config

    row = paper.RL.get(config["env"])
    command = None if row is None else {"maml": row.command, "oracle": row.oracle_command}.get(config["mode"])
    if command is None:
        return ""
    try:
        trained = TrainConfig.from_dict(config).to_dict()
        wanted = command_config(os.path.join(paper.PAPER_COMMANDS, command)).to_dict()
    except (ValueError, TypeError, OSError) as e:
        return f"unchecked ({e})"
    unused = {"pretrain_lr"} | ({"fast_lr"} if config["mode"] == "oracle" else set())
    return ";".join(f"{name}={_shown(trained[name])} (the paper's {_shown(wanted[name])})" for name in TRAINED_SETTINGS
                    if name not in unused and trained[name] != wanted[name])


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def summary_rows(method, env, returns, num_trajs, lr):
    """Summary rows (`COLUMNS`) of one returns array [num_tasks, steps + 1]: mean over tasks, stderr."""
    import numpy as np
    n = returns.shape[0]
    rows = []
    for step in range(returns.shape[1]):
        col = returns[:, step]
        stderr = col.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
        rows.append([method, env, step, f"{col.mean():.4f}", f"{stderr:.4f}", n, num_trajs, lr])
    return rows


def seed_mean_rows(method, env, returns_by_seed, num_trajs, lr):
    """Rows over several init seeds (each [num_tasks, steps + 1]): mean_return = mean over the
    seeds of each seed's mean over tasks; stderr = sample std of those means / sqrt(seeds) (nan
    for one seed: no spread to estimate); num_tasks = tasks per seed."""
    import numpy as np
    means = np.stack([r.mean(0) for r in returns_by_seed])  # [seeds, steps + 1]
    k, n = len(returns_by_seed), returns_by_seed[0].shape[0]
    rows = []
    for step in range(means.shape[1]):
        stderr = means[:, step].std(ddof=1) / np.sqrt(k) if k > 1 else float("nan")
        rows.append([method, env, step, f"{means[:, step].mean():.4f}", f"{stderr:.4f}", n, num_trajs, lr])
    return rows


def direction_rows(method, env, returns_by_seed, tasks, num_trajs, lr):
    """Summary rows per direction of a direction task (-1 backward, +1 forward), task column
    '<env>:backward' / '<env>:forward': `summary_rows` over that direction's tasks for one
    returns array, `seed_mean_rows` for several (init seeds)."""
    import numpy as np
    tasks = np.asarray(tasks).reshape(-1)
    rows = []
    for value, name in DIRECTIONS:
        chosen = tasks == value
        if not chosen.any():
            continue
        parts = [r[chosen] for r in returns_by_seed]
        label = f"{env}:{name}"
        rows += (summary_rows(method, label, parts[0], num_trajs, lr) if len(parts) == 1
                 else seed_mean_rows(method, label, parts, num_trajs, lr))
    return rows


def markdown_table(summary):
    """A table (header row first) as markdown."""
    header, rows = summary[0], summary[1:]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
