"""Entry point mirroring the original main.py: same flags, defaults and run directories.

    python -m maml_tf.main --flagfile=flags/sinusoid.flags             # train
    python -m maml_tf.main --flagfile=flags/sinusoid.flags --train=False --update_batch_size=5 \
        --train_update_batch_size=10                                    # 600-task test

    --distribute=mirrored | multi_worker                                # several devices or machines
                                                                        # (README: "Running on several ...")

This module only translates flags into plain arguments for the library.
"""
import contextlib
import glob
import math
import os
import sys
from typing import Callable, NamedTuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

import maml_tf  # noqa: E402

from report import cli, distribution  # noqa: E402
from report.resume import changed_settings  # noqa: E402
from report.console import exit_with_error  # noqa: E402
from maml_tf.flag_definitions import TRAINING_FLAGS, define_flags  # noqa: E402

FLAGS = flags.FLAGS

define_flags(flags)


def _positive(name):
    if getattr(FLAGS, name) < 1:
        raise ValueError(f"--{name} must be >= 1, got {getattr(FLAGS, name)}")


def _finite_positive(name, unset=None):
    value = getattr(FLAGS, name)
    if value != unset and not (math.isfinite(value) and value > 0):
        allowed = "" if unset is None else f" (or {unset:g}: unset)"
        raise ValueError(f"--{name} must be a finite number > 0{allowed}, got {value}")


def _validate():
    for name in ("meta_batch_size", "update_batch_size", "num_updates", "num_classes", "num_filters", "num_test_tasks",
                 "test_tasks_per_call"):
        _positive(name)
    _finite_positive("update_lr")
    _finite_positive("meta_lr")
    _finite_positive("train_update_lr", unset=-1)
    if FLAGS.train_update_batch_size != -1 and FLAGS.train_update_batch_size < 1:
        raise ValueError(f"--train_update_batch_size must be >= 1 (or -1: unset), got {FLAGS.train_update_batch_size}")
    if FLAGS.train and (FLAGS.train_update_batch_size != -1 or FLAGS.train_update_lr != -1):
        raise ValueError("--train_update_batch_size / --train_update_lr name the run a test reads (a model trained "
                         "with another K or alpha): for testing, add --train=False; a training trains with "
                         "--update_batch_size and --update_lr")
    if not 0 <= FLAGS.seed <= 2**31 - 1:
        raise ValueError(f"--seed must be >= 0 and <= {2**31 - 1}, got {FLAGS.seed}")
    if FLAGS.test_iter < -1:
        raise ValueError(f"--test_iter must be an iteration > 0 (or -1 or 0: the newest), got {FLAGS.test_iter}")
    if FLAGS.train and not FLAGS.resume and asked_checkpoint() > 0:
        raise ValueError(f"--test_iter={FLAGS.test_iter} while training resumes from model-{FLAGS.test_iter} "
                         f"(as the original): drop --noresume, or --test_iter to start a new run (the original "
                         f"started a new run then, ignoring --test_iter)")
    for name in ("pretrain_iterations", "metatrain_iterations"):
        if getattr(FLAGS, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(FLAGS, name)}")
    if FLAGS.baseline == "oracle" and FLAGS.datasource != "sinusoid":
        raise ValueError("--baseline=oracle is only defined for --datasource=sinusoid")
    if FLAGS.datasource == "miniimagenet" and not FLAGS.max_pool and FLAGS.conv:
        raise ValueError("--datasource=miniimagenet needs --max_pool=True (its output layer expects 5x5 maps)")
    for name in ("test_tasks_file", "write_test_tasks"):
        if getattr(FLAGS, name) is None:
            continue
        if FLAGS.train:
            raise ValueError(f"--{name} is for testing: add --train=False")
        if FLAGS.datasource == "sinusoid":
            raise ValueError(f"--{name} lists image episodes: only for --datasource=omniglot or miniimagenet")
    if FLAGS.write_test_tasks is not None and FLAGS.test_tasks_file is not None and os.path.realpath(
            FLAGS.write_test_tasks) == os.path.realpath(FLAGS.test_tasks_file):
        raise ValueError("--write_test_tasks names the --test_tasks_file being read: write the tasks to another file")
    if FLAGS.train and FLAGS.test_tasks_per_call != 1:
        raise ValueError("--test_tasks_per_call is for testing: add --train=False (validation during training "
                         "evaluates one meta-batch per call, as the original)")
    error = distribution.flag_error(FLAGS.distribute, FLAGS.cpu_replicas, join_timeout=FLAGS.join_timeout)
    if error:
        raise ValueError(error)
    if FLAGS.jit_compile and FLAGS.distribute != "none":
        raise ValueError("--jit_compile compiles the single-device steps only: not with --distribute")
    if FLAGS.jit_compile and FLAGS.conv_method == "grouped":
        raise ValueError("--jit_compile: XLA recompiles grouped convolutions at every step; use another --conv_method")
    if FLAGS.jit_compile and _xla_refuses_meta_training():
        raise ValueError("--jit_compile: meta-training with --max_pool needs --stop_grad: XLA's second derivative "
                         "of max-pool is accurate to bfloat16 only (and XLA was slower on MiniImagenet anyway)")
    if FLAGS.test_tasks_file is not None and FLAGS["num_test_tasks"].present:
        raise ValueError("--num_test_tasks cannot be combined with --test_tasks_file (the file gives the tasks)")


def _starts_up_to(starts, start):
    """The recorded starts at or before iteration `start`: a resume from an earlier checkpoint
    (--test_iter) supersedes those after it (entries that are not whole records are kept)."""
    return [st for st in starts if not isinstance(st, dict) or not isinstance(st.get("iteration"), int)
            or st["iteration"] <= start]


def asked_checkpoint():
    """The checkpoint --test_iter names, -1 for the newest: the original read `--test_iter` only
    when it was > 0 (`if FLAGS.test_iter > 0:`), so 0 also means the newest."""
    return FLAGS.test_iter if FLAGS.test_iter > 0 else -1


def _xla_refuses_meta_training():
    """XLA's second derivative of max-pool is accurate to bfloat16 only (MetaLearner refuses it)."""
    return (FLAGS.train and FLAGS.metatrain_iterations > 0 and FLAGS.datasource != "sinusoid" and FLAGS.conv
            and FLAGS.max_pool and not FLAGS.stop_grad)


# Training runs shorter than this leave --jit_compile's default at graphs without timing XLA: the
# timing (a trace and an XLA compile more, then a few steps each way) would not pay for itself.
AUTO_XLA_MIN_ITERATIONS = 1000


def xla_left_off(*, total_iterations, start, distribute, grouped, refused):
    """Why a training run with --jit_compile unset runs graphs without timing XLA (None: time
    both ways): a run of `total_iterations` resumed at `start`; `grouped`: a grouped convolution
    runs (--conv_method, or what calibration chose); `refused`: XLA would refuse the meta-step."""
    if distribute != "none":
        return "--distribute"
    if grouped:
        return "--conv_method=grouped"
    if refused:
        return "second-order meta-training through max-pool"
    if total_iterations - start < AUTO_XLA_MIN_ITERATIONS:
        return f"fewer than {AUTO_XLA_MIN_ITERATIONS} iterations left"
    return None


def _time_xla(model, learner, build_learner, sampler, metatrain, say, check_stop):
    """`xla_choice.choose_on_copies` with the batch of the run's iteration 0 (drawn from its own
    generator, as training draws each iteration's; the sampler keeps no state, so training's
    tasks are unchanged); says what it measured and chose."""
    from maml_tf import training, xla_choice

    batch = sampler.sample(training.batch_rng(FLAGS.seed, 0), FLAGS.meta_batch_size)
    step = "meta-step" if metatrain else "pretraining step"
    say(f"Timing the {step} as a graph and compiled by XLA on the first batch (--jit_compile unset; "
        f"--jit_compile or --nojit_compile skip this)...")

    def run_step(copy):
        return copy.train_step(batch.support, batch.query) if metatrain else copy.pretrain_step(batch.support)

    timing = xla_choice.choose_on_copies(model, learner, build_learner, run_step, check_stop=check_stop)
    graph_ms, xla_ms = _milliseconds(timing)
    if timing.xla_seconds is None:
        say(f"XLA failed ({timing.error}); the steps run as graphs ({graph_ms} ms per {step})")
    else:
        say(f"{step}: {graph_ms} ms as a graph, {xla_ms} ms compiled by XLA: "
            + ("the steps are compiled by XLA" if timing.use_xla else "the steps run as graphs"))
    return timing


def _say_if_xla(say, timed=False):
    if FLAGS.jit_compile:
        say(f"Steps compiled by XLA ({'chosen by timing' if timed else '--jit_compile'}): the first step of "
            f"each shape compiles first.")


def start_record(iteration, settings, xla_timing):
    """run_info.json's entry for one start: its iteration, its `settings` (the iteration counts
    and the settings that change its speed but not what it trains) and, when --jit_compile was
    unset and timed, the two step times (`step_ms_graph_xla`, [graph, XLA] ms) and XLA's error if
    it failed (`xla_error`)."""
    record = {"iteration": iteration, **settings}
    if xla_timing is not None:
        record["step_ms_graph_xla"] = _milliseconds(xla_timing)
        if xla_timing.error is not None:
            record["xla_error"] = xla_timing.error
    return record


def _milliseconds(timing):
    """[graph, XLA] ms per step, rounded (XLA None where it failed)."""
    return [None if t is None else round(1000 * t, 1) for t in (timing.graph_seconds, timing.xla_seconds)]


def train_update_batch_size(f=FLAGS):
    """The K the run was (or is) trained with: --train_update_batch_size, else --update_batch_size
    (the original main()'s rule); part of the run's name."""
    return f.update_batch_size if f.train_update_batch_size == -1 else f.train_update_batch_size


def settings_from_flags(f=FLAGS):
    """Plain settings derived from the flags the way the original main() derived them."""
    train_ubs = train_update_batch_size(f)
    train_lr = f.update_lr if f.train_update_lr == -1 else f.train_update_lr
    from maml_tf import experiment

    exp = experiment.exp_string(f.num_classes, f.meta_batch_size, train_ubs, f.num_updates, train_lr,
                                f.num_filters, f.max_pool, f.stop_grad, f.baseline, f.norm)
    pretrain, metatrain = experiment.training_iterations(f.baseline, f.pretrain_iterations, f.metatrain_iterations)
    return {
        "exp_string": exp,
        "run_dir": os.path.join(f.logdir, exp),
        "eval_num_inner_steps": experiment.eval_num_inner_steps(f.datasource, f.train),
        "pretrain_iterations": pretrain,
        "metatrain_iterations": metatrain,
    }


def run_info(f=FLAGS):
    """What `report.compare` needs to know about a run (its name alone does not say)."""
    method = "oracle" if f.baseline == "oracle" else ("maml" if f.metatrain_iterations > 0 else "pretrain")
    return {"datasource": f.datasource, "method": method, "num_classes": f.num_classes, "conv": f.conv,
            "stop_grad": f.stop_grad, "num_updates": f.num_updates, "update_lr": f.update_lr,
            "pretrain_iterations": f.pretrain_iterations, "metatrain_iterations": f.metatrain_iterations,
            "jit_compile": f.jit_compile}


RUN_INFO = "run_info.json"
# What is written to a run directory through a temporary file (report.files): the run record, the
# checkpoint state file, test results.
ATOMIC_WRITES = r"run_info\.json|checkpoint|test_ubs.+\.(csv|pkl|json)"
PATH_FLAGS = ("logdir", "data_dir", "test_tasks_file", "write_test_tasks")  # `~` expanded (report.cli)


def training_flags(f=FLAGS):
    return {name: getattr(f, name) for name in TRAINING_FLAGS}


def test_flags(f=FLAGS):
    """What a test evaluates besides the model (every worker of a distributed test must agree)."""
    return {name: getattr(f, name) for name in ("test_iter", "test_set", "num_test_tasks", "train_update_batch_size",
                                                "train_update_lr", "train", "test_tasks_per_call")}


def _conv_method(model, strategy, say):
    """--conv_method as `batched_forward`'s `conv`; 'calibrate' measures each layer's methods
    at the shapes this run feeds it (per replica when training, --test_tasks_per_call tasks when
    testing)."""
    from maml_tf import batched_forward

    if FLAGS.conv_method == "grouped" and not batched_forward.grouped_convolution_trains():
        raise ValueError("--conv_method=grouped: this TensorFlow cannot differentiate grouped convolutions "
                         "here (on CPU only its oneDNN kernels can: unset TF_ENABLE_ONEDNN_OPTS=0); use auto")
    if FLAGS.conv_method != "calibrate":
        return FLAGS.conv_method
    if FLAGS.datasource == "sinusoid" or not FLAGS.conv:
        return "auto"  # no convolutions to time
    from maml_tf import experiment

    tasks = FLAGS.test_tasks_per_call  # per replica, as the test's calls run
    if FLAGS.train:
        tasks = FLAGS.meta_batch_size // distribution.num_replicas(strategy)
    query = FLAGS.update_batch_size
    if FLAGS.train:
        query = experiment.TRAIN_QUERY_PER_CLASS.get(FLAGS.datasource, FLAGS.update_batch_size)
    examples = (FLAGS.num_classes * FLAGS.update_batch_size, FLAGS.num_classes * query)
    chosen = batched_forward.calibrate_convs(model, tasks, examples, jit_compile=bool(FLAGS.jit_compile))
    say("Convolution methods (--conv_method=calibrate, " + f"{tasks} tasks x {examples} examples"
        + (", XLA" if FLAGS.jit_compile else "") + "): "
        + ", ".join(f"{name} {method}" for name, method in chosen.items()))
    return chosen


def _write_test_tasks(test_tasks, tasks_source):
    from maml_tf import episode_list

    try:
        episode_list.write_episode_list(
            FLAGS.write_test_tasks, test_tasks.episodes(),
            comment=f"maml-tf episode list: {FLAGS.datasource}, {FLAGS.num_classes}-way, "
                    f"K={FLAGS.update_batch_size}; {tasks_source}\n"
                    f"relative paths are under the dataset folder of --data_dir (format: maml_tf/episode_list.py)")
    except (OSError, ValueError) as e:
        why = (e.strerror or e) if isinstance(e, OSError) else e
        raise ValueError(f"--write_test_tasks={FLAGS.write_test_tasks}: {why}") from None
    print(f"Wrote the tasks to {FLAGS.write_test_tasks}")


def check_resume_flags(run_dir, flags_now, warn=lambda message: print(message, file=sys.stderr)):
    """Refuse to resume a run whose run_info.json records other training flags (naming each);
    `warn` about what cannot be checked (no run_info.json beside checkpoints, flags it does not
    record). Returns what run_info.json holds ({} for a new run)."""
    from report.files import read_json_object

    path = os.path.join(run_dir, RUN_INFO)
    if not os.path.exists(path):
        if glob.glob(os.path.join(glob.escape(run_dir), "model-*.index")):
            warn(f"warning: {run_dir} has checkpoints but no {RUN_INFO} (written by an older version): its "
                 f"training settings cannot be checked against this command's")
        return {}
    remedy = "move it away to resume without the settings check"
    info = read_json_object(path, remedy)
    recorded = info.get("training_flags", {})
    if not isinstance(recorded, dict) or not isinstance(info.get("starts", []), list):
        raise ValueError(f"{path} is damaged (its training_flags or starts are not what maml_tf.main writes); {remedy}")
    message = changed_settings(run_dir, recorded, flags_now, [k for k in flags_now if k in recorded])
    if message:
        raise ValueError(message)
    unchecked = [k for k in flags_now if k not in recorded]
    if unchecked:
        warn(f"warning: {path} does not record " + ", ".join(f"--{k}" for k in unchecked) + ": resumed without "
             "checking " + ("them" if len(unchecked) > 1 else "it") + " against this command's")
    return info


_CHIEF = True  # False in the workers of a multi-worker job other than the chief


class _Built(NamedTuple):
    """What a test and a training both start from (`_build`)."""
    strategy: object  # the tf.distribute strategy of --distribute, None for none
    chief: bool
    say: Callable  # print on the chief, nothing on the other workers
    settings: dict  # settings_from_flags()
    train_sampler: object
    eval_sampler: object
    test_tasks: object  # (testing; None when training) the tasks to evaluate: the fixed pool or an episode list
    tasks_source: object  # (testing; None when training) where they come from, for the output
    model: object
    conv: object  # the per-task convolution method(s) (_conv_method)
    build_learner: Callable  # (model, jit_compile) -> MetaLearner, as for this run
    learner: object
    checkpointer: object


def run():
    """Test (--train=False) or train, as the flags say."""
    built = _build()
    (_train if FLAGS.train else _test)(built)


def _build():
    """The strategy, samplers (or the test's tasks), model, learner and checkpointer of this run."""
    import keras

    from maml_tf import experiment
    from maml_tf.checkpoints import Checkpointer

    global _CHIEF
    # First: a multi-worker strategy must exist before TensorFlow runs anything else.
    strategy = distribution.make_strategy(
        FLAGS.distribute, FLAGS.cpu_replicas, FLAGS.join_timeout,
        join_timeout_message=distribution.join_timeout_line("maml_tf.main", FLAGS.join_timeout))
    _CHIEF = chief = distribution.is_chief(strategy)
    if FLAGS.train:
        distribution.per_replica_count(FLAGS.meta_batch_size, strategy, "meta_batch_size")
    say = print if chief else (lambda *args, **kwargs: None)  # only the chief reports
    s = settings_from_flags()
    if FLAGS.test_tasks_file is not None:  # (test only) the file's tasks replace the fixed pool
        from maml_tf import episode_list

        train_sampler, eval_sampler = None, None
        test_tasks = episode_list.load_episode_list(FLAGS.test_tasks_file, FLAGS.data_dir, FLAGS.datasource,
                                                    FLAGS.num_classes, FLAGS.update_batch_size,
                                                    split="test" if FLAGS.test_set else "val")
        tasks_source = f"the {len(test_tasks)} tasks of {FLAGS.test_tasks_file}"
    else:
        train_sampler, eval_sampler = experiment.build_samplers(
            FLAGS.datasource, data_dir=FLAGS.data_dir, num_classes=FLAGS.num_classes,
            update_batch_size=FLAGS.update_batch_size, train=FLAGS.train, test_set=FLAGS.test_set,
            oracle=FLAGS.baseline == "oracle")
        test_tasks, tasks_source = None, None
        if not FLAGS.train:
            seed = experiment.test_seed(FLAGS.datasource)
            test_tasks = eval_sampler.eval_pool(FLAGS.num_test_tasks, seed=seed)
            tasks_source = f"{FLAGS.num_test_tasks} tasks (the original's pool, seed {seed})"
    keras.utils.set_random_seed(FLAGS.seed)
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = experiment.build_model(FLAGS.datasource, num_classes=FLAGS.num_classes,
                                       oracle=FLAGS.baseline == "oracle", conv=FLAGS.conv,
                                       num_filters=FLAGS.num_filters, max_pool=FLAGS.max_pool, norm=FLAGS.norm)
        conv = _conv_method(model, strategy, say)

        def build_learner(model, jit_compile):
            return experiment.build_learner(model, FLAGS.datasource, update_batch_size=FLAGS.update_batch_size,
                                            update_lr=FLAGS.update_lr, num_inner_steps=FLAGS.num_updates,
                                            first_order=FLAGS.stop_grad, meta_lr=FLAGS.meta_lr, conv=conv,
                                            dense=FLAGS.dense_method, jit_compile=jit_compile)

        learner = build_learner(model, bool(FLAGS.jit_compile))
    if FLAGS.jit_compile is not None or not FLAGS.train:
        FLAGS.jit_compile = bool(FLAGS.jit_compile)  # unset when testing: graphs
        _say_if_xla(say)
    checkpointer = Checkpointer(s["run_dir"], learner)
    if strategy is not None:
        from maml_tf.distributed import DistributedLearner

        learner = DistributedLearner(learner, strategy)
        say(f"Devices: {distribution.describe(strategy)}")
    return _Built(strategy, chief, say, s, train_sampler, eval_sampler, test_tasks, tasks_source, model, conv,
                  build_learner, learner, checkpointer)


def _test(built):
    """The test of --test_iter's checkpoint (the newest by default) on the test tasks: the chief
    restores and broadcasts it, every process evaluates its share, the chief writes the results."""
    from maml_tf import evaluation
    from report.console import ProgressLine
    from report.files import check_writable
    from report.stop import GracefulStop, StopRequested

    strategy, chief, learner, checkpointer = built.strategy, built.chief, built.learner, built.checkpointer
    test_tasks, tasks_source = built.test_tasks, built.tasks_source
    run_dir, test_steps = built.settings["run_dir"], built.settings["eval_num_inner_steps"]
    # The chief reads the checkpoint and sends it to the workers (they need not see its disk).
    itr, failure = 0, None
    if chief:
        try:
            itr = checkpointer.restore(asked_checkpoint(), required=True)
            check_writable(run_dir, "the run directory (--logdir)")
            kept = evaluation.keep_other_result(run_dir, FLAGS.update_batch_size, FLAGS.update_lr, {
                "test_set": FLAGS.test_set, "num_tasks": len(test_tasks), "test_tasks_file": _tasks_file(),
                "checkpoint_iteration": itr, "test_pool": _test_pool()})
            if kept:
                print(f"{evaluation.result_paths(run_dir, FLAGS.update_batch_size, FLAGS.update_lr)[0]} holds another "
                      f"test's result ({kept[1]}): kept in {kept[0]} (this test replaces it when it ends)")
            if FLAGS.write_test_tasks is not None:
                _write_test_tasks(test_tasks, tasks_source)
        except Exception as e:  # reported below, once every process knows
            failure = e
    distribution.agree_to_start(strategy, failure is not None, {**training_flags(), **test_flags()})
    if failure is not None:
        raise failure
    itr = distribution.broadcast_from_chief(strategy, checkpointer.state, itr)
    if not chief:
        evaluation.evaluate_tasks(learner, test_tasks, test_steps,
                                  tasks_per_call=FLAGS.test_tasks_per_call * learner.num_replicas)
        return
    # One process (no multi_worker job, whose workers would wait for a stopped chief): SIGINT or
    # SIGTERM ends the test after the current call, in one line, with nothing written.
    with GracefulStop() if FLAGS.distribute != "multi_worker" else contextlib.nullcontext() as stop:
        print(f"Restored {run_dir}/model-{itr}; testing {tasks_source} with {test_steps} steps, "
              f"K={FLAGS.update_batch_size}, alpha={FLAGS.update_lr}")
        line, done = ProgressLine(len(test_tasks), "Tested tasks"), [0]

        def progress(tasks_done):
            done[0] = tasks_done
            line.update(tasks_done)
            if stop is not None and tasks_done < len(test_tasks):  # (a finished test is written)
                stop.check()

        try:
            rows = evaluation.evaluate_tasks(learner, test_tasks, test_steps, progress=progress,
                                             tasks_per_call=FLAGS.test_tasks_per_call * distribution.num_replicas(strategy))
        except StopRequested as stopped:
            stopped.message = (f"maml_tf.main: stopped by {stopped} after testing {done[0]} of {len(test_tasks)} "
                               f"tasks (nothing written); run the same command to test again")
            raise
    means, stds, ci95 = evaluation.summarize(rows)
    print("Mean validation accuracy/loss, stddev, and confidence intervals")
    print((means, stds, ci95))
    info = {**run_info(), **trained_as(run_dir, itr), "checkpoint_iteration": itr,
            "train_update_batch_size": train_update_batch_size(), "test_set": FLAGS.test_set,
            "test_tasks_file": _tasks_file(), "test_pool": _test_pool()}
    csv_path, _ = evaluation.write_results(run_dir, FLAGS.update_batch_size, FLAGS.update_lr, rows, info=info)
    print(f"Wrote {csv_path}")


def _test_pool():
    """The description's "test_pool": the original's tasks (the fixed pool), None for an episode list."""
    from maml_tf import evaluation

    return None if _tasks_file() else evaluation.ORIGINAL_POOL


def _tasks_file():
    return None if FLAGS.test_tasks_file is None else os.path.abspath(FLAGS.test_tasks_file)


# What a test takes from the training's run_info.json rather than from its own command line.
TRAINED_AS = ("method", "pretrain_iterations", "metatrain_iterations", "imported_from", "released_checkpoint",
              "training_flags")


def trained_as(run_dir, checkpoint_iteration):
    """How the run's checkpoint after `checkpoint_iteration` iterations was trained, as its
    training recorded it in run_info.json (`TRAINED_AS`): a test's description (read by
    report.compare) says what the checkpoint is, not what the test command's flags would train:
    the pretrained baseline and MAML share a run name, and a test command without
    --metatrain_iterations=0 would otherwise call a pretrained run MAML (its default is 15000).
    Where each start recorded its iteration counts, the method is "pretrain" if every iteration
    that led to the checkpoint was a pretraining one (a run pretrained, then meta-trained on: its
    pretrained checkpoints are the pretrained baseline). An imported checkpoint's run_info.json
    (maml_tf.original_checkpoint) adds where it came from. {} for a run without run_info.json
    (trained before it existed); a damaged one is said in a warning line and skipped."""
    from report.files import read_json_object

    path = os.path.join(run_dir, RUN_INFO)
    if not os.path.exists(path):
        return {}
    try:
        recorded = read_json_object(path, "the test describes the run by this command's flags instead")
    except (ValueError, OSError) as e:
        print(f"maml_tf.main: warning: {e}", file=sys.stderr)
        return {}
    described = {key: recorded[key] for key in TRAINED_AS if key in recorded}
    starts = recorded.get("starts")
    if described.get("method") in ("maml", "pretrain") and isinstance(starts, list) and starts and all(
            isinstance(st, dict) and isinstance(st.get("iteration"), int)
            and isinstance(st.get("pretrain_iterations"), int) for st in starts):
        # The checkpoint's own history, newest start first: the last start at or before it trained up
        # to it, the last start before that one up to its beginning, ... (a start after a later one
        # resumed from an earlier checkpoint: --test_iter, or a damaged newest one stepped past).
        lineage, end = [], checkpoint_iteration
        for st in reversed(starts):
            if st["iteration"] <= end:
                lineage.append((st, end))
                end = st["iteration"]
        meta_trained = any(max(st["iteration"], st["pretrain_iterations"]) < end for st, end in lineage)
        from_the_start = bool(lineage) and lineage[-1][0]["iteration"] == 0
        if meta_trained or from_the_start:  # (else what came before the first start is unknown: as recorded)
            described["method"] = "maml" if meta_trained else "pretrain"
    return described


def _train(built):
    """Meta-training (or pretraining) from the newest checkpoint, if any, to the iterations asked
    for; only the chief writes to --logdir."""
    from maml_tf import evaluation, experiment, training
    from report.files import check_writable, remove_temporary_files
    from report.run_lock import RunLock
    from report.stop import GracefulStop, StopRequested
    from report.tensorboard import ScalarWriter

    strategy, chief, say, s = built.strategy, built.chief, built.say, built.settings
    model, conv, build_learner, learner = built.model, built.conv, built.build_learner, built.learner
    checkpointer, train_sampler, eval_sampler = built.checkpointer, built.train_sampler, built.eval_sampler
    run_dir, test_steps = s["run_dir"], s["eval_num_inner_steps"]
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(GracefulStop())
        start, failure, recorded = 0, None, {}
        if chief:
            try:
                check_writable(run_dir, "the run directory (--logdir)")
                stack.enter_context(RunLock(run_dir))
                if FLAGS.resume:
                    recorded = check_resume_flags(run_dir, training_flags())
                    total = s["pretrain_iterations"] + s["metatrain_iterations"]
                    if asked_checkpoint() >= total:
                        raise ValueError(f"--test_iter={FLAGS.test_iter}: a training resumed from model-"
                                         f"{FLAGS.test_iter} would train nothing (it is asked for {total} "
                                         f"iterations in all); ask for more, or drop --test_iter")
                    warn = lambda message: print(message, file=sys.stderr)  # noqa: E731
                    if asked_checkpoint() > 0:  # (superseded checkpoints keep the record of their starts)
                        start = checkpointer.resume_from(asked_checkpoint(), warn,
                                                         keep_with_superseded=[os.path.join(run_dir, RUN_INFO)])
                    else:
                        start = checkpointer.restore_for_resume(warn)
                elif checkpointer.available():
                    raise ValueError(f"--noresume: {run_dir} already holds checkpoints (newest model-"
                                     f"{checkpointer.available()[-1]}) that a new run would write over and "
                                     f"mix with its own; move them away or use another --logdir")
            except Exception as e:  # reported below, once every process knows
                failure = e
        distribution.agree_to_start(strategy, failure is not None, training_flags())
        if failure is not None:
            raise failure
        start = distribution.broadcast_from_chief(strategy, checkpointer.state, start)
        if start:
            say(f"Resuming {run_dir} from iteration {start}")
        xla_timing = None
        if FLAGS.jit_compile is None:  # unset: timed now that the run is ours, or graphs (xla_left_off)
            grouped = "grouped" in (conv.values() if isinstance(conv, dict) else [conv])  # (calibrate may pick it)
            if xla_left_off(total_iterations=s["pretrain_iterations"] + s["metatrain_iterations"], start=start,
                            distribute=FLAGS.distribute, grouped=grouped, refused=_xla_refuses_meta_training()) is None:
                try:  # (the plain stop: no timing under --distribute, whose stop is agreed)
                    xla_timing = _time_xla(model, learner, build_learner, train_sampler,
                                           s["metatrain_iterations"] > 0, say, stop.check)
                except StopRequested as stopped:  # before any iteration: nothing new to save
                    stopped.iteration = start
                    raise
            FLAGS.jit_compile = xla_timing is not None and xla_timing.use_xla  # what runs (run_info.json)
            _say_if_xla(say, timed=True)
        if chief:
            checkpointer.remove_leftovers()
            remove_temporary_files(run_dir, of=ATOMIC_WRITES)
        if chief and start < s["pretrain_iterations"] + s["metatrain_iterations"]:  # (a start with nothing to do
            # leaves the record as it is: its flags did not train the checkpoints a test will describe)
            # Every start with its iteration counts and the settings that change its speed.
            starts = (_starts_up_to(recorded.get("starts", []), start) if start else []) + [start_record(
                start, {name: getattr(FLAGS, name) for name in ("pretrain_iterations", "metatrain_iterations",
                                                                "jit_compile", "conv_method", "dense_method",
                                                                "distribute")}, xla_timing)]
            evaluation.write_json(os.path.join(run_dir, RUN_INFO), {**run_info(), "training_flags": training_flags(),
                                                                   "starts": starts})
        writer = ScalarWriter(run_dir, resumed_at=start) if FLAGS.log and chief else None
        say(f"Run directory: {run_dir}")
        say("Done initializing, starting training.")
        try:
            training.train(
                learner, train_sampler, checkpointer if chief else None,
                meta_batch_size=FLAGS.meta_batch_size, pretrain_iterations=s["pretrain_iterations"],
                metatrain_iterations=s["metatrain_iterations"], start_iteration=start, seed=FLAGS.seed,
                eval_num_inner_steps=test_steps, print_interval=experiment.print_interval(FLAGS.datasource),
                val_sampler=experiment.validation_sampler(FLAGS.datasource, eval_sampler), writer=writer,
                stop=distribution.AgreedStop(stop, strategy) if strategy is not None else stop, print_fn=say,
            )
        except training.DivergenceError as e:
            saved = checkpointer.available()
            newest = ("see the chief's output" if not chief else 'model-%d' % saved[-1] if saved else 'none')
            culprits = "--meta_lr" if e.pretraining else "--update_lr or --meta_lr"
            raise ValueError(f"training diverged: {e}; nothing non-finite was saved (newest checkpoint: "
                             f"{newest}); try a smaller {culprits} "
                             f"(now --update_lr={FLAGS.update_lr}, --meta_lr={FLAGS.meta_lr})") from None
        finally:
            if writer is not None:
                writer.close()
    # (a run resumed past the iterations asked for did nothing: it is still where it was)
    say(f"Finished at iteration {max(start, s['pretrain_iterations'] + s['metatrain_iterations'])}; "
        f"checkpoints in {run_dir}")


def stopped_message(signal_name, iteration, chief):
    """The line a run stopped by a signal ends with: where it resumes (model-`iteration`), or,
    stopped before its first iteration (0), that there is nothing to resume from."""
    if iteration == 0:
        return (f"maml_tf.main: stopped by {signal_name} before the first iteration (nothing saved); "
                f"run the same command to start again")
    saved = f"saved model-{iteration}" if chief else f"the chief saved model-{iteration}"
    return f"maml_tf.main: stopped by {signal_name} after iteration {iteration} ({saved}); run the same command to resume"


def main(argv):
    logging.set_verbosity(logging.WARNING)  # hide checkpoint-saver INFO chatter
    if len(argv) > 1:
        exit_with_error("maml_tf.main", f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        _validate()  # before TensorFlow is imported: a bad flag is one line at once
    except ValueError as e:
        exit_with_error("maml_tf.main", str(e))
    maml_tf.choose_onednn(FLAGS.datasource)  # before TensorFlow loads, which reads it once
    distribution.quiet_lost_worker_logs(FLAGS.distribute)
    from maml_tf.checkpoints import (CheckpointDamagedError, CheckpointMismatchError, CheckpointNotFoundError,
                                     CheckpointWriteError)
    from report.run_lock import RunLockedError
    from report.stop import StopRequested

    try:
        run()
    except StopRequested as e:  # (a stopped test says so itself; a stopped training where it resumes)
        print(e.message or stopped_message(str(e), e.iteration, _CHIEF), file=sys.stderr)
        sys.exit(e.exit_status)
    except KeyboardInterrupt:
        print("maml_tf.main: interrupted; nothing was written since the last message", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError, CheckpointNotFoundError, CheckpointDamagedError, CheckpointMismatchError,
            CheckpointWriteError, RunLockedError) as e:  # (report.distribution.JobStartError is a ValueError)
        exit_with_error("maml_tf.main", str(e))
    except Exception as e:  # a collective that failed: another process of the job is gone
        if not distribution.is_lost_contact(e, FLAGS.distribute):
            raise
        exit_with_error("maml_tf.main", distribution.lost_contact_message(e))


if __name__ == "__main__":
    cli.run(main, path_flags=PATH_FLAGS)
