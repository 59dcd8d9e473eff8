"""Evaluate trained policies with the paper's test protocol and write a CSV.

    python -m rl.evaluate --run=maml:~/runs/rl_point --run=pretrained:~/runs/rl_point_pretrain \
        --run=random:~/runs/rl_point_random --run=oracle:~/runs/rl_point_oracle \
        --output=~/runs/rl_point_eval.csv

Output CSV (one row per method and step):
    method,task,step,mean_return,stderr,num_tasks,num_trajs,fast_lr
mean_return = mean over test tasks of each task's mean undiscounted return,
stderr = sample std over tasks / sqrt(num_tasks). Oracle runs (goal in the
observation) are evaluated at step 0 only, as in the original. A second file,
<output stem>_per_task.csv (method,task,task_index,step,mean_return), keeps
the raw per-task numbers.
"""
import csv
import io
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("run", [], "method:logdir of a run written by rl.train (repeatable).")
flags.DEFINE_string("output", None, "CSV file to write.")
flags.DEFINE_integer("num_tasks", 40, "Test tasks.")
flags.DEFINE_integer("task_seed", None, "numpy seed of the test tasks (default: the env's original "
                     "test script: 1; ant_dir 2).")
flags.DEFINE_integer("num_trajs", None, "Trajectories per task per step (default: the env's original test "
                     "script: point 40 = 4000 steps, MuJoCo 20 = 4000 steps, ant_dir 40 = 8000 steps).")
flags.DEFINE_float("later_lr_scale", None, "Step size of steps 2.. relative to the first (default: the "
                   "env's original test script: 0.5; ant_dir 0.01).")
flags.DEFINE_integer("collector_workers", None, "Workers of rllab's parallel collector to emulate with "
                     "--batch_in_steps (default 1, one sampler, as for the paper's results; the released "
                     "test scripts' n_parallel=4 is --collector_workers=4).")
flags.DEFINE_integer("num_steps", 3, "Adaptation steps to evaluate after step 0.")
flags.DEFINE_float("fast_lr", None, "Adaptation step size (default: the run's --fast_lr).")
flags.DEFINE_bool("batch_in_steps", True,
                  "Sample whole paths until num_trajs * horizon steps per task (the original's "
                  "batch_size=4000); false = exactly num_trajs paths.")
flags.DEFINE_integer("seed", 4, "Seed of the sampling noise (original test script: 4).")


def main(argv):
    from rl.evaluation import COLUMNS, evaluate_run, markdown_table, parse_runs, protocol, summary_rows
    from rl.run_io import atomic_write
    if len(argv) > 1:
        sys.exit(f"rl.evaluate: error: unexpected arguments {' '.join(argv[1:])}")
    if not FLAGS.output:
        sys.exit("rl.evaluate: error: --output is required")
    try:
        runs = parse_runs(FLAGS.run)
    except ValueError as e:
        sys.exit(f"rl.evaluate: error: {e}")
    if not runs:
        sys.exit("rl.evaluate: error: give at least one --run=method:logdir")
    for name in ("num_tasks", "num_trajs", "collector_workers"):
        if getattr(FLAGS, name) is not None and getattr(FLAGS, name) < 1:
            sys.exit(f"rl.evaluate: error: --{name} must be >= 1")
    if (FLAGS.collector_workers or 1) > 1 and not FLAGS.batch_in_steps:
        sys.exit("rl.evaluate: error: --collector_workers > 1 needs --batch_in_steps (it emulates a step budget)")
    if FLAGS.num_steps < 0:
        sys.exit("rl.evaluate: error: --num_steps must be >= 0")
    summary, per_task = [COLUMNS], [["method", "task", "task_index", "step", "mean_return"]]
    for method, logdir in runs:
        try:
            proto = protocol(logdir, task_seed=FLAGS.task_seed, num_trajs=FLAGS.num_trajs,
                             later_lr_scale=FLAGS.later_lr_scale, collector_workers=FLAGS.collector_workers)
            returns, lr, env = evaluate_run(
                logdir, num_tasks=FLAGS.num_tasks, num_steps=FLAGS.num_steps, fast_lr=FLAGS.fast_lr,
                seed=FLAGS.seed, batch_in_steps=FLAGS.batch_in_steps, **proto)
        except FileNotFoundError as e:
            sys.exit(f"rl.evaluate: error: --run={method}:{logdir}: {e}")
        rows = summary_rows(method, env, returns, proto["num_trajs"], lr)
        summary += rows
        per_task += [[method, env, i, s, f"{returns[i, s]:.4f}"]
                     for i in range(returns.shape[0]) for s in range(returns.shape[1])]
        for row in rows:
            logging.info("%-10s step %d: %s +- %s", method, row[2], row[3], row[4])
    output = os.path.expanduser(FLAGS.output)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    for path, table in ((output, summary), (os.path.splitext(output)[0] + "_per_task.csv", per_task)):
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(table)
        atomic_write(path, buf.getvalue())
    print(markdown_table(summary))


if __name__ == "__main__":
    app.run(main)
