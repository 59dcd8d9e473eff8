"""Evaluate trained policies with the paper's test protocol and write a CSV.

    python -m rl.evaluate --run=maml:~/runs/rl_point --run=pretrained:~/runs/rl_point_pretrain \
        --run=random:~/runs/rl_point_random --run=oracle:~/runs/rl_point_oracle \
        --output=~/runs/rl_point_eval.csv

Output CSV (one row per method and step):
    method,task,step,mean_return,stderr,num_tasks,num_trajs,fast_lr,mode,design,checkpoint,training
mean_return = mean over test tasks of each task's mean undiscounted return,
stderr = sample std over tasks / sqrt(num_tasks); mode = what the run was trained as (maml,
pretrain, oracle, random), design = the evaluation options set away from the defaults (the
released test protocol, one sampling stream, the run's step size; ';'-separated, empty for
none), which report.compare shows next to the paper's numbers; checkpoint = the checkpoint
evaluated (`ckpt-<N>`, `ckpt-<N> of <n_itr>` when the run was set to train longer, `init seed
S` for a random initialisation); training = the run's training settings that differ from the
paper's command for its task (`name=value (the paper's value)`, ';'-separated; MAML and oracle
runs). Oracle runs (goal in the
observation) are evaluated at step 0 only, as in the original. A second file,
<output stem>_per_task.csv (method,task,task_index,step,mean_return), keeps
the raw per-task numbers.

Designs beyond the released test scripts' (see rl/evaluation.py):
  --step_schedule=feb2017    0.5 alpha at every step: the original repo's optimizer as
                             committed from 25 Feb to 13 Apr 2017 (7fe27d7..285393d), with
                             the icml/*.pkl results of 7fe27d7; --first_lr_scale sets the
                             first step's scale directly.
  --same_sampling_seed       every task sampled from the same seed --seed (the original ran
                             each task with one fixed seed; with one init, tasks of the same
                             direction then give identical returns).
  --init_seeds=1,2,3         runs trained with --mode=random are evaluated from the initial
                             policy of each seed (as rl.train --seed=N builds it) instead of
                             their checkpoint: rows <method>_init<N> per seed, then rows
                             <method> with the mean over the seeds (stderr = std of the seeds'
                             means / sqrt(seeds), nan for one seed; num_tasks = tasks per seed).
  --by_direction             also <output stem>_by_direction.csv: the summary columns, one row
                             per method, direction and step of the direction tasks, task
                             '<env>:backward' (task -1) / '<env>:forward' (+1).

--distribute=mirrored|multi_worker splits the test tasks across devices or processes
(rl.distributed; --num_tasks must divide by the replica count): the returns are those of one
device (point task; MuJoCo start noise is drawn per process, so there they depend on the
process count). With multi_worker run the same command on every worker (each with its
TF_CONFIG) within --join_timeout; every worker reads the --run directories (a shared disk or
identical copies), the chief alone writes --output. Before evaluating, the processes agree to
start: one whose checks failed (a missing --run on a worker, the chief's --output) ends with
its line, the others with one line; a worker whose evaluation flags, runs' config.json or newest
checkpoint number differ from the chief's is refused on every process.
Not with --same_sampling_seed.

Faults end with one line `rl.evaluate: error: ...` (exit status 1), before the evaluation
where they can be known up front: bad flags, a --run whose config.json or newest checkpoint
is missing or damaged (named; never an older checkpoint in its place), an --output that is a
directory or whose folder is not writable. Non-finite mean returns (a diverging adaptation)
are written to the csv as nan, then reported as an error. Ctrl-C or SIGTERM: one line, no csv,
exit status 130 / 143.
"""
import math
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as rl.train: TensorFlow's C++ INFO and WARNING lines

from absl import flags, logging  # noqa: E402

from report import distribution  # noqa: E402
from report.console import exit_with_error  # noqa: E402
from report.files import atomic_write_all, csv_bytes  # noqa: E402
from report.stop import EXIT_STATUS, Interrupted, interrupt_where_it_is  # noqa: E402
from rl.config import MAX_SEED  # noqa: E402

FLAGS = flags.FLAGS
distribution.define_flags(flags)
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
flags.DEFINE_string("step_schedule", "released",
                    "released: alpha at step 1, --later_lr_scale * alpha after (the released test scripts); "
                    "feb2017: 0.5 alpha at every step (the original repo's FirstOrderOptimizer as committed "
                    "from 25 Feb to 13 Apr 2017).")
flags.DEFINE_float("first_lr_scale", None, "Step size of step 1 relative to alpha (default 1; "
                   "--step_schedule=feb2017 sets 0.5).")
flags.DEFINE_bool("same_sampling_seed", False,
                  "Sample every test task from the same seed --seed, as if each were evaluated alone "
                  "(the original test scripts' fixed seed per task); default: one stream for all tasks.")
flags.DEFINE_list("init_seeds", [], "For runs trained with --mode=random: evaluate the initial policy of "
                  "each of these seeds instead of the checkpoint, and their mean.")
flags.DEFINE_bool("by_direction", False, "Also write <output stem>_by_direction.csv: the direction tasks' "
                  "rows split into backward and forward tasks.")


def _progress(label):
    """evaluate_run's progress: a log line '<label>: sampling passes 2/4 (…/s, ETA …)' when a pass
    ends, at most every 30 s, and at the end (each process counts its own passes)."""
    from report.console import ProgressLine
    return lambda total: ProgressLine(total, f"{label}: sampling passes", print_fn=logging.info).update


def _error(message):
    exit_with_error("rl.evaluate", message)


def _resolve_schedule(evaluation):
    """(first_lr_scale, later_lr_scale override or None) from the flags, or a one-line error."""
    try:
        fixed = evaluation.schedule_scales(FLAGS.step_schedule)
    except ValueError as e:
        _error(f"--step_schedule: {e}")
    if fixed is not None:
        for name in ("first_lr_scale", "later_lr_scale"):
            if getattr(FLAGS, name) is not None:
                _error(f"--step_schedule={FLAGS.step_schedule} sets the step sizes; "
                         f"drop --{name}")
        return fixed
    first = 1.0 if FLAGS.first_lr_scale is None else FLAGS.first_lr_scale
    if not first > 0:
        _error(f"--first_lr_scale must be > 0 (got {FLAGS.first_lr_scale})")
    return first, FLAGS.later_lr_scale


def _design(config, proto, default_proto, first_lr_scale):
    """The `design` column of one run's rows: the evaluation options this command set away from
    rl.evaluate's defaults (the released test scripts' protocol, one sampling stream, the run's
    own step size), ';'-separated, '' for none; step options are left off an oracle run, which
    takes no steps. (Test tasks and paths per task have columns of their own.) report.compare
    shows them next to the paper's numbers."""
    parts = []
    if not config["oracle"]:
        parts += [] if FLAGS.step_schedule == "released" else [f"step_schedule={FLAGS.step_schedule}"]
        parts += [] if FLAGS.first_lr_scale is None or first_lr_scale == 1.0 else [f"first_lr_scale={first_lr_scale}"]
        parts += ([] if proto["later_lr_scale"] == default_proto["later_lr_scale"] or FLAGS.step_schedule != "released"
                  else [f"later_lr_scale={proto['later_lr_scale']}"])
        if FLAGS.fast_lr not in (None, config["fast_lr"]):
            parts.append(f"fast_lr={FLAGS.fast_lr} (the run's {config['fast_lr']})")
    parts += [f"{key}={proto[key]}" for key in ("task_seed", "collector_workers") if proto[key] != default_proto[key]]
    parts += ["same_sampling_seed"] if FLAGS.same_sampling_seed else []
    parts += [] if FLAGS.batch_in_steps else ["nobatch_in_steps"]
    return ";".join(parts)


def _init_seeds():
    try:
        seeds = [int(s) for s in FLAGS.init_seeds]
    except ValueError:
        _error(f"--init_seeds must be comma-separated integers (got {','.join(FLAGS.init_seeds)})")
    if len(set(seeds)) != len(seeds):
        _error(f"--init_seeds repeats a seed (got {','.join(FLAGS.init_seeds)})")
    if not all(0 <= seed <= MAX_SEED for seed in seeds):
        _error(f"--init_seeds must be >= 0 and <= {MAX_SEED} (got {','.join(FLAGS.init_seeds)})")
    return seeds


def _check_numbers():
    """One-line errors for numeric flags out of range (NaN and infinity included)."""
    for name in ("num_tasks", "num_trajs", "collector_workers"):
        if getattr(FLAGS, name) is not None and getattr(FLAGS, name) < 1:
            _error(f"--{name} must be >= 1")
    if (FLAGS.collector_workers or 1) > 1 and not FLAGS.batch_in_steps:
        _error("--collector_workers > 1 needs --batch_in_steps (it emulates a step budget)")
    if FLAGS.num_steps < 0:
        _error("--num_steps must be >= 0")
    for name in ("fast_lr", "later_lr_scale"):
        value = getattr(FLAGS, name)
        if value is not None and not (value >= 0 and math.isfinite(value)):
            _error(f"--{name} must be >= 0 and finite (got {value})")
    if FLAGS.first_lr_scale is not None and not math.isfinite(FLAGS.first_lr_scale):
        _error(f"--first_lr_scale must be > 0 and finite (got {FLAGS.first_lr_scale})")
    for name in ("seed", "task_seed"):
        if getattr(FLAGS, name) is not None and not 0 <= getattr(FLAGS, name) <= MAX_SEED:
            _error(f"--{name} must be >= 0 and <= {MAX_SEED} (got {getattr(FLAGS, name)})")
    if FLAGS.join_timeout < 0:
        _error(f"--join_timeout must be >= 0 (got {FLAGS.join_timeout}; 0 waits forever)")


class StartError(ValueError):
    """A one-line error of this process's checks before the evaluation (`_output_paths`, `_read_runs`)."""


def _output_paths():
    """The csv files to write (summary, per task, by direction), checked before the evaluation:
    none may be a directory, and their folder must be writable (else StartError). Leftover
    temporary files of an interrupted write of these files are removed."""
    from report.files import check_files_writable, check_writable, remove_temporary_files
    output = os.path.expanduser(FLAGS.output)
    stem = os.path.splitext(output)[0]
    paths = [output, stem + "_per_task.csv"] + ([stem + "_by_direction.csv"] if FLAGS.by_direction else [])
    for path in paths:
        if os.path.isdir(path):
            raise StartError(f"--output: {path} is a directory; give the csv file to write")
    folder = os.path.dirname(os.path.abspath(output))
    try:
        check_writable(folder, "--output folder")
    except OSError as e:
        raise StartError(str(e)) from None
    try:
        remove_temporary_files(folder, of=[os.path.basename(path) for path in paths])
        check_files_writable(paths, "--output:")
    except OSError as e:
        raise StartError(str(e) if str(e).startswith("--output") else f"--output: {e}") from None
    return paths


def _partway(config, checkpoint):
    """True when a trained run's checkpoint comes before the run's --n_itr."""
    from rl.run_io import checkpoint_number
    if checkpoint is None or config["mode"] == "random":
        return False
    return checkpoint_number(checkpoint) < config["n_itr"]


def _strategy():
    """The strategy of --distribute (None for none), made before any other TensorFlow op; a
    one-line error for unusable flags or a --num_tasks that does not split across its replicas."""
    error = distribution.flag_error(FLAGS.distribute, FLAGS.cpu_replicas)
    if error:
        _error(error)
    if FLAGS.distribute == "none":
        return None
    if FLAGS.same_sampling_seed:
        _error(f"--same_sampling_seed evaluates each task alone; it cannot be split (--distribute={FLAGS.distribute})")
    distribution.quiet_lost_worker_logs(FLAGS.distribute)
    try:
        strategy = distribution.make_strategy(
            FLAGS.distribute, FLAGS.cpu_replicas, FLAGS.join_timeout,
            join_timeout_message=distribution.join_timeout_line("rl.evaluate", FLAGS.join_timeout))
        distribution.per_replica_count(FLAGS.num_tasks, strategy, "num_tasks")
    except ValueError as e:
        _error(str(e))
    logging.info("Devices: %s", distribution.describe(strategy))
    return strategy


def _label(method, init_seed):
    """The csv label of a run's rows: its --run label, with `_init<seed>` for one initialisation
    of a random run (--init_seeds; their mean keeps the plain label)."""
    return method if init_seed is None else f"{method}_init{init_seed}"


def _read_runs(runs, init_seeds, evaluation):
    """The runs' config.json dicts, the checkpoint of each to evaluate (its newest, checked
    intact; None where --init_seeds replaces it) and its `training` column; StartError when a
    run is not evaluable or the flags do not fit them. A distributed evaluation's workers agree on these checkpoints and
    every process then evaluates them by name."""
    from rl.run_io import RunError, RunState, read_config
    configs = []
    for method, logdir in runs:
        try:
            configs.append(read_config(logdir))
        except RunError as e:
            raise StartError(f"--run={method}:{logdir}: {e}") from None
    if init_seeds and not any(c["mode"] == "random" for c in configs):
        raise StartError("--init_seeds applies to runs trained with --mode=random; no --run is one")
    if FLAGS.by_direction and not any(c["env"] in evaluation.DIRECTION_ENVS for c in configs):
        raise StartError(f"--by_direction needs a run of a direction task ({', '.join(evaluation.DIRECTION_ENVS)})")
    labels = []
    for (method, _), config in zip(runs, configs):
        seeds = init_seeds if init_seeds and config["mode"] == "random" else []
        labels += [method] + [_label(method, seed) for seed in seeds]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise StartError(f"--run: the csv would hold two runs' rows under {', '.join(map(repr, repeated))} (with "
                         f"--init_seeds a random run's rows are labelled <label>_init<seed>); give each run its own "
                         f"label")
    checked = []
    for (method, logdir), config in zip(runs, configs):  # every checkpoint readable before any evaluation
        if init_seeds and config["mode"] == "random":
            checked.append(None)
            continue
        try:
            checked.append(RunState.check_newest(logdir))
        except RunError as e:
            raise StartError(f"--run={method}:{logdir}: {e}") from None
    return configs, checked, [evaluation.trained_otherwise(config) for config in configs]


# The flags that change what every process computes: a distributed evaluation's workers must
# share them with the chief (--by_direction, --output: the chief's files only).
EVALUATION_FLAGS = ("num_tasks", "task_seed", "num_trajs", "later_lr_scale", "collector_workers", "num_steps",
                    "fast_lr", "batch_in_steps", "seed", "step_schedule", "first_lr_scale", "same_sampling_seed",
                    "init_seeds")


def evaluation_settings(runs, configs, checked):
    """What every process of a distributed evaluation must share with the chief
    (`report.distribution.agree_to_start`): `EVALUATION_FLAGS`, the methods in order and, for
    each run, its config.json and the checkpoint `_read_runs` checked, its newest (the same runs,
    wherever each worker's copy of them lies; a stale copy differs), which every process then
    evaluates by that name."""
    return {**{name: getattr(FLAGS, name) for name in EVALUATION_FLAGS},
            "methods": [method for method, _ in runs],
            "runs": [{"config": config, "checkpoint": os.path.basename(checkpoint or "")}
                     for config, checkpoint in zip(configs or [], checked or [])]}


def main(argv):
    """`_main`; its start-up errors and those of a distributed job one line each. A collective
    that fails because another process of a multi-worker job is gone is one line
    (`report.distribution.is_lost_contact`); any other TensorFlow error is a bug and keeps its
    traceback."""
    with interrupt_where_it_is() as reclaim_signals:  # nothing to save: a signal stops it where it is
        try:
            _main(argv, reclaim_signals)
        except (KeyboardInterrupt, Interrupted) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            print(f"rl.evaluate: interrupted ({signal.Signals(signum).name}); no csv written", file=sys.stderr)
            sys.exit(EXIT_STATUS[signum])
        except (StartError, distribution.JobStartError) as e:
            _error(str(e))
        except Exception as e:  # a collective that failed: another process of the job is gone
            if not distribution.is_lost_contact(e, FLAGS.distribute):
                raise
            _error(distribution.lost_contact_message(e))


def _main(argv, reclaim_signals=lambda: None):
    from rl import evaluation
    from rl.evaluation import COLUMNS, evaluate_run, markdown_table, parse_runs, protocol, summary_rows
    from rl.run_io import RunError
    if len(argv) > 1:
        _error(f"unexpected arguments {' '.join(argv[1:])}")
    if not FLAGS.output:
        _error("--output is required")
    try:
        runs = parse_runs(FLAGS.run)
    except ValueError as e:
        _error(str(e))
    if not runs:
        _error("give at least one --run=method:logdir")
    _check_numbers()
    first_lr_scale, later_lr_scale = _resolve_schedule(evaluation)
    init_seeds = _init_seeds()
    strategy = _strategy()
    reclaim_signals()  # (a multi-worker strategy took SIGTERM over when it was built)
    chief = distribution.is_chief(strategy)
    # This process's checks, then (multi_worker) every process agrees to start before the
    # first collective: one that failed ends with its error, the others with JobStartError.
    paths = configs = checked = trainings = failure = None
    try:
        paths = _output_paths() if chief else None  # the chief alone writes --output
        configs, checked, trainings = _read_runs(runs, init_seeds, evaluation)  # every worker reads the --run dirs
    except Exception as e:
        if strategy is None:
            raise
        failure = e
    if strategy is not None:
        distribution.agree_to_start(strategy, failure is not None, evaluation_settings(runs, configs, checked))
        if failure is not None:
            raise failure
    from rl.adaptation import step_sizes
    summary, per_task = [COLUMNS], [["method", "task", "task_index", "step", "mean_return"]]
    by_direction = [COLUMNS]
    for (method, logdir), config, newest, training in zip(runs, configs, checked, trainings):
        seeds = init_seeds if init_seeds and config["mode"] == "random" else [None]
        proto = protocol(logdir, task_seed=FLAGS.task_seed, num_trajs=FLAGS.num_trajs,
                         later_lr_scale=later_lr_scale, collector_workers=FLAGS.collector_workers)
        tail = [config["mode"], _design(config, proto, protocol(logdir), first_lr_scale)]  # mode, design
        described = lambda rows, checkpoint: [row + tail + [checkpoint, training] for row in rows]  # noqa: E731
        results = []
        for seed in seeds:
            checkpoint = None if seed is not None else newest
            evaluated = f"init seed {seed}" if seed is not None else os.path.basename(checkpoint)
            partway = _partway(config, checkpoint)
            logging.info("Evaluating %s (%s) %s%s on %d tasks", method, logdir, evaluated,
                         f" (partway: the run was set to {config['n_itr']} iterations)" if partway else "",
                         FLAGS.num_tasks)
            evaluated += f" of {config['n_itr']}" if partway else ""
            try:
                returns, lr, env = evaluate_run(
                    logdir, num_tasks=FLAGS.num_tasks, num_steps=FLAGS.num_steps, fast_lr=FLAGS.fast_lr,
                    seed=FLAGS.seed, batch_in_steps=FLAGS.batch_in_steps, first_lr_scale=first_lr_scale,
                    same_sampling_seed=FLAGS.same_sampling_seed, init_seed=seed, strategy=strategy,
                    progress=_progress(_label(method, seed)), checkpoint=checkpoint, **proto)
            except (RunError, FileNotFoundError) as e:
                _error(f"--run={method}:{logdir}: {e}")
            label = _label(method, seed)
            results.append(returns)
            rows = described(summary_rows(label, env, returns, proto["num_trajs"], lr), evaluated)
            summary += rows
            per_task += [[label, env, i, s, f"{returns[i, s]:.4f}"]
                         for i in range(returns.shape[0]) for s in range(returns.shape[1])]
            for row in rows:
                logging.info("%-10s step %d: %s +- %s", label, row[2], row[3], row[4])
            if FLAGS.by_direction and env in evaluation.DIRECTION_ENVS:
                tasks = evaluation.evaluation_tasks(env, FLAGS.num_tasks, proto["task_seed"])
                by_direction += described(evaluation.direction_rows(label, env, [returns], tasks, proto["num_trajs"], lr),
                                          evaluated)
        if seeds != [None]:
            over_seeds = f"init seeds {' '.join(map(str, seeds))}"
            rows = described(evaluation.seed_mean_rows(method, env, results, proto["num_trajs"], lr), over_seeds)
            summary += rows
            for row in rows:
                logging.info("%-10s step %d: %s +- %s (mean over init seeds %s)", method, row[2], row[3], row[4],
                             ",".join(map(str, seeds)))
            if FLAGS.by_direction and env in evaluation.DIRECTION_ENVS:
                by_direction += described(evaluation.direction_rows(method, env, results, tasks, proto["num_trajs"], lr),
                                          over_seeds)
        logging.info("%-10s step sizes %s; %s", method,
                     step_sizes(lr, 0 if config["oracle"] else FLAGS.num_steps, proto["later_lr_scale"],
                                first_lr_scale),
                     "the same sampling seed for every task" if FLAGS.same_sampling_seed else "one sampling stream")
    if not chief:
        logging.info("Evaluated this worker's tasks; the chief writes %s", FLAGS.output)
        return
    tables = [summary, per_task] + ([by_direction] if FLAGS.by_direction else [])
    contents = {path: csv_bytes(table) for path, table in zip(paths, tables)}
    try:  # one result: the detail files, then the summary; an error leaves every old file as it was
        atomic_write_all({path: contents[path] for path in paths[1:] + paths[:1]})
    except OSError as e:
        _error(f"no csv written: {e}")
    print(markdown_table(summary))
    if FLAGS.by_direction:
        print()
        print(markdown_table(by_direction))
    diverged = [f"{row[0]} step {row[2]}" for row in summary[1:] if not math.isfinite(float(row[3]))]
    if diverged:
        _error(f"non-finite mean returns ({', '.join(diverged)}; written to {paths[0]} as nan): the adapted "
               f"policy diverged; try a smaller --fast_lr (or --later_lr_scale)")


if __name__ == "__main__":
    from report.cli import run as run_app
    run_app(main, path_flags=["output"])
