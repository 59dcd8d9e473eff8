"""Training driver: `rl.config.TrainConfig` -> run directory (resumable). Knows nothing about flags.

The run directory holds config.json (`rl.config.run_record`), checkpoints, progress.csv
(one row of the trainer's statistics per iteration) and TensorBoard summaries (tb/).

Reliability (each one-line error is a `rl.run_io.RunError`; rl.train prints it):
  - one writer: the run holds `report.run_lock.RunLock` on the run directory throughout
    (RunLockedError naming the other process); the kernel drops the lock of a killed run;
  - the run directory must be writable before anything starts (OSError naming it); leftovers
    of killed runs (`*.tmp<pid>`, TF `ckpt-<N>_temp`) are removed at the start;
  - resume: from the newest intact checkpoint, damaged newer ones renamed aside with a
    warning (`rl.run_io`); with other training settings it is refused (ConfigMismatch);
  - divergence: a non-finite statistic (returns, surrogate loss, KL) or weight ends training
    with `Diverged` naming the iteration and the flags most likely responsible; nothing of
    that iteration is written (no row, no checkpoint), so no checkpoint holds a non-finite value;
  - a failed write (disk full) raises StorageError; the previous checkpoint stays intact;
  - SIGINT / SIGTERM (`report.stop`) end the run after the current iteration is saved
    (`TrainingStopped`, exit status 130 / 143); rerunning the command continues exactly;
  - across processes (`rl.distributed`): every process finishes its start-up (the chief's
    checks above, its lock and its resume included) before the first collective, then they
    agree to start (`report.distribution.agree_to_start`): a process that failed raises its own
    error and the others `JobStartError`, and a worker whose `job_settings` differ from the
    chief's is refused in every process;
  - TensorBoard: each resumed session starts with a SessionLog START at the resumed
    iteration (`report.tensorboard.ScalarWriter`), so TensorBoard drops the steps the
    interrupted session logged after its last checkpoint instead of showing them twice.
"""
import contextlib
import math
import os
import statistics
import time
import types

from absl import logging

from report.stop import StopRequested
from rl.run_io import RunError

# --jit_compile unset: runs with fewer iterations left than this run graphs without timing XLA
# (the timing, an XLA compile and a few KL gradients, costs about one iteration).
XLA_TIMING_MIN_ITERATIONS = 20
# Statistics that measure time, not the learning: never checked for divergence.
_TIMING = ("ItrTime", "SampleTime", "EnvSteps", "EnvStepsPerSec", "Time")


class Diverged(RunError, FloatingPointError):
    """Training produced a non-finite statistic or weight."""


class TrainingStopped(StopRequested):
    """SIGINT / SIGTERM ended the run after saving; `message` says where, `exit_status` is 130 / 143."""

    def __init__(self, signum, message):
        super().__init__(signum)
        self.message = message


def likely_flags(config):
    """The flags whose too-large values make the `config.mode` trainer diverge."""
    if config.mode == "maml":
        return f"--fast_lr={config.fast_lr} (the inner step) or --max_kl={config.max_kl} (the TRPO step)"
    if config.mode == "pretrain":
        return f"--pretrain_lr={config.pretrain_lr} (the Adam step)"
    return f"--max_kl={config.max_kl} (the TRPO step) or --cg_damping={config.cg_damping}"


def check_finite(stats, variables, itr, config, last_checkpoint):
    """Raise Diverged if a statistic of iteration `itr` or a variable (weights, optimiser state)
    is NaN or infinite."""
    bad = [k for k, v in stats.items() if k not in _TIMING and not math.isfinite(float(v))]
    if not bad:
        import numpy as np
        values = [(getattr(v, "path", v.name), np.asarray(v.numpy())) for v in variables]
        bad = [name for name, a in values if a.dtype.kind == "f" and not np.all(np.isfinite(a))][:3]
    if bad:
        kept = f"the last checkpoint, {os.path.basename(last_checkpoint)}, holds the policy before it" \
            if last_checkpoint else "no checkpoint was written"
        named = ", ".join(bad[:4]) + (", ..." if len(bad) > 4 else "")
        raise Diverged(f"training diverged at iteration {itr}: non-finite {named}; most likely too "
                       f"large a step: {likely_flags(config)}; nothing of iteration {itr} was saved, {kept}")


def job_settings(config):
    """What every process of a distributed run must share with the chief (`report.distribution.
    agree_to_start`): the `TrainConfig` (`config.to_dict()`, what config.json records), n_itr
    included (all run the same iterations), without the settings that only change how one
    process works: keep_checkpoints (the chief's disk) and sampler_workers (its env processes).
    Not --distribute / --cpu_replicas / --join_timeout: they are no training settings."""
    return {k: v for k, v in config.to_dict().items() if k not in ("keep_checkpoints", "sampler_workers")}


def run(config, logdir, strategy=None):
    """Train according to `config` (a `TrainConfig`, or a plain dict as in config.json); resumable.

    `strategy`: None (one device), or a tf.distribute strategy (`report.distribution.make_strategy`;
    mode 'maml' only) over whose replicas the meta-batch is split (`rl.distributed`). Across
    processes only the chief touches `logdir` (lock, config.json, checkpoints, progress.csv,
    TensorBoard); it restores and sends the run's state to the others, and all stop at the same
    iteration when one of them gets SIGINT / SIGTERM. Every process first finishes its start-up
    (the chief's checks of `logdir`, its lock and resume included) and then agrees to start
    (`report.distribution.agree_to_start`): if one failed, it raises its own error and the
    others `JobStartError`, as they do if a worker's `job_settings` differ from the chief's."""
    from report.distribution import agree_to_start
    from rl.config import TrainConfig

    if not isinstance(config, TrainConfig):
        config = TrainConfig.from_dict(config)
    if strategy is not None and config.mode != "maml":
        raise ValueError(f"a tf.distribute strategy is for mode 'maml', not {config.mode!r}")
    with contextlib.ExitStack() as stack:  # the lock, the stop handler and the envs, released in reverse
        failure = None
        try:
            job = _start(config, logdir, strategy, stack)
        except Exception as e:
            if strategy is None:
                raise
            failure = e  # raised once every process knows
        if strategy is not None:
            agree_to_start(strategy, failure is not None, job_settings(config))
            if failure is not None:
                raise failure
        _train(config, logdir, strategy, job)


def _start(config, logdir, strategy, stack):
    """This process's start-up, everything before the first collective: the chief checks and
    locks `logdir` (entered on `stack`), builds the envs, policy and learner, and restores the
    newest intact checkpoint (damaged newer ones renamed aside; other training settings refused)
    and writes config.json. Returns them as a namespace; `start` is the chief's resume iteration
    (0 in the other processes until `broadcast_run_state`)."""
    from report.distribution import is_chief
    from report.files import check_writable
    from report.run_lock import RunLock
    from report.stop import GracefulStop
    from rl import run_io
    from rl.config import run_record
    from rl.envs import make_vec_env

    chief = is_chief(strategy)
    if chief:
        run_io.check_run_directory(logdir)
        check_writable(logdir, "--logdir")
        stack.enter_context(RunLock(logdir))  # before TensorFlow loads: a second writer is refused at once
    import numpy as np
    import tensorflow as tf
    tf.get_logger().setLevel("WARNING")  # hide per-save checkpoint chatter
    if chief:
        check_writable(run_io.checkpoint_dir(logdir), "--logdir")
        removed = run_io.remove_leftovers(logdir)
        if removed:
            logging.info("Removed leftovers of an interrupted run in %s: %s", logdir, ", ".join(sorted(removed)))
    stop = stack.enter_context(GracefulStop())
    split = None
    if strategy is not None:
        from report.distribution import AgreedStop
        from rl.distributed import TaskSplit
        stop = AgreedStop(stop, strategy)  # every process stops at the same iteration
        split = TaskSplit(strategy, config.meta_batch_size)
    tasks = config.meta_batch_size if split is None else split.count
    vec_env = make_vec_env(config.env, tasks * config.fast_batch_size,
                           oracle=config.mode == "oracle", workers=config.sampler_workers, seed=config.seed)
    if hasattr(vec_env, "close"):
        stack.callback(vec_env.close)

    from rl.maml import TRAINERS, adam
    from rl.policy import Policy
    tf.random.set_seed(config.seed)
    policy = Policy(vec_env.obs_dim, vec_env.act_dim, config.hidden_sizes, config.hidden_activation,
                    seed=config.seed)
    rng = np.random.default_rng(config.seed)
    learner = optimizer = None
    if config.mode != "random":  # random: the initial policy is the run's only checkpoint
        if strategy is None:
            learner = TRAINERS[config.mode](policy, vec_env, config)
        else:
            from rl.distributed import DistributedMAMLTRPO
            learner = DistributedMAMLTRPO(policy, vec_env, config, strategy, split)
        # Every trained mode's checkpoint has always held Adam's state (only pretrain steps it).
        optimizer = learner.optimizer if config.mode == "pretrain" else adam(config.pretrain_lr)
        optimizer.build(policy.model.trainable_variables)
    state, start = None, 0
    if chief:
        state = run_io.RunState(logdir, policy.model, optimizer, config.keep_checkpoints)
        record = run_record(config, vec_env.obs_dim, vec_env.act_dim)
        found = state.find_resume_point()
        changes = []
        if found != (None, []):
            run_io.check_resume_config(logdir, record)
            changes = run_io.resumable_changes(logdir, record)
        elif os.path.exists(os.path.join(logdir, run_io.CONFIG)):
            logging.warning("%s has a config.json but no checkpoint: starting the run afresh, replacing its config.json "
                            "and progress.csv (its tb/ events stay beside the new ones)", logdir)
        if state.resume(found, rng, env=vec_env):
            logging.info("Resumed from %s at iteration %d%s", state.latest_checkpoint, int(state.iteration),
                         f" with {', '.join(changes)} (recorded in config.json)" if changes else "")
        run_io.write_config(logdir, record)
        start = int(state.iteration)
    return types.SimpleNamespace(vec_env=vec_env, stop=stop, policy=policy, rng=rng, learner=learner,
                                 optimizer=optimizer, state=state, start=start)


def _train(config, logdir, strategy, job):
    import numpy as np
    from report.console import format_duration
    from report.distribution import is_chief
    from report.tensorboard import ScalarWriter
    from rl import run_io
    from rl.envs.parallel import SamplerWorkerLost

    chief = is_chief(strategy)
    vec_env, stop, policy, rng = job.vec_env, job.stop, job.policy, job.rng
    learner, optimizer, state, start = job.learner, job.optimizer, job.state, job.start
    if strategy is not None:
        from rl.distributed import broadcast_run_state
        start = broadcast_run_state(strategy, policy.model.variables, rng, start)
        if not chief and start:
            logging.info("Resuming at iteration %d with the chief's checkpoint", start)
    n_itr = 0 if learner is None else config.n_itr
    if learner is not None and start > 0 and start >= n_itr:
        logging.info("%s is already at iteration %d, --n_itr=%d: nothing to train", logdir, start, n_itr)
        return
    if learner is None or start == 0 and n_itr == 0:
        if chief:
            state.save(0, rng, env=vec_env)
            logging.info("Saved the initial (random) policy to %s", state.latest_checkpoint)
        return
    if config.jit_compile is None and strategy is None and hasattr(learner, "choose_compilation"):
        learner.time_xla_next = n_itr - start >= XLA_TIMING_MIN_ITERATIONS
        if learner.time_xla_next:
            logging.info("Timing the TRPO step's KL gradient as a graph and compiled by XLA on the first batch "
                         "(--jit_compile unset; --jit_compile or --nojit_compile skip this)")
    progress = run_io.ProgressCsv(logdir, start) if chief else None
    variables = list(policy.model.variables) + list(optimizer.variables)
    writer = ScalarWriter(os.path.join(logdir, "tb"), resumed_at=start) if chief and start < n_itr else None
    session_start, iteration_seconds = time.time(), []
    itr = start
    try:
        for itr in range(start, n_itr):
            try:
                stop.check()
            except StopRequested as e:
                raise TrainingStopped(e.signum, _stopped_message(e.signum, itr, start, state, strategy)) from None
            if strategy is not None:
                learner.split.reseed_start_noise(vec_env, config.seed, itr)
            # A worker that is not the chief names the chief's newest checkpoint (it saves every iteration).
            last = state.latest_checkpoint if chief else f"ckpt-{itr}" if itr else None
            try:
                stats = learner.iteration(rng)
            except (np.linalg.LinAlgError, FloatingPointError) as e:  # e.g. the baseline fit on NaN paths
                raise Diverged(f"training diverged at iteration {itr}: {type(e).__name__}: {e}; most likely too "
                               f"large a step: {likely_flags(config)}; nothing of iteration {itr} was saved"
                               + (f", the last checkpoint, {os.path.basename(last)}, holds the "
                                  "policy before it" if last else "")) from None
            check_finite(stats, variables, itr, config, last)
            if itr == start and getattr(learner, "xla_timing", None) is not None:
                logging.info("%s", xla_choice_line(learner.xla_timing))
            iteration_seconds.append(stats["ItrTime"])
            steps_per_s = stats["EnvSteps"] / stats["ItrTime"]
            eta = time_left(iteration_seconds, n_itr - itr - 1)
            row = {"Iteration": itr, **stats, "EnvStepsPerSec": steps_per_s, "Time": time.time() - session_start}
            logging.info(
                "itr %d/%d | pre %.2f | post %s | KL %s | loss %.5f -> %.5f | %.0f steps/s | %.1f s/itr "
                "(sampling %.1f) | ETA %s",
                itr + 1, n_itr, stats["0AverageReturn"],
                f"{stats['1AverageReturn']:.2f}" if "1AverageReturn" in stats else "-",
                f"{stats['MeanKL']:.4f}" if "MeanKL" in stats else "-",
                stats["LossBefore"], stats["LossAfter"], steps_per_s, stats["ItrTime"], stats["SampleTime"],
                format_duration(eta))
            if not chief:
                continue
            writer.scalars(itr, {k: v for k, v in row.items() if k != "Iteration"})
            writer.flush()
            progress.append(row)
            state.save(itr + 1, rng, env=vec_env)
    except SamplerWorkerLost as lost:
        signum = _stop_signal(stop, lost)
        if signum is None:
            raise  # (an OSError: one line)
        # The stop signal went to the whole process group (scancel, kill -- -PGID): the sampler workers
        # ended with it, so iteration `itr` cannot finish or be saved; the last checkpoint stands.
        raise TrainingStopped(signum, _stopped_message(signum, itr, start, state, strategy)) from None
    finally:
        if writer is not None:
            writer.close()
    logging.info("Done: %d iterations in %s", n_itr, logdir)


def _stop_signal(stop, lost, wait_seconds=2.0):
    """The stop signal this process received, or None; when a sampler worker was ended by a stop
    signal and none is recorded here yet (a job scheduler may signal the workers first), waits up
    to `wait_seconds` for it."""
    import signal

    ended_by_stop = lost.exitcode in (-signal.SIGTERM, -signal.SIGINT)
    deadline = time.monotonic() + (wait_seconds if ended_by_stop else 0.0)
    while stop.signum is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return stop.signum


def xla_choice_line(timing):
    """The line saying what the KL-gradient timing found and chose (`report.xla_timing.XlaTiming`)."""
    if timing.xla_seconds is None:
        return (f"KL gradient: {1e3 * timing.graph_seconds:.0f} ms as a graph; XLA failed ({timing.error}): "
                "the TRPO step runs as graphs")
    return (f"KL gradient: {1e3 * timing.graph_seconds:.0f} ms as a graph, {1e3 * timing.xla_seconds:.0f} ms "
            f"compiled by XLA: the TRPO step {'is compiled by XLA' if timing.use_xla else 'runs as graphs'}")


def _stopped_message(signum, itr, start, state, strategy):
    """The one line of a run stopped before iteration `itr` (started at `start`)."""
    if state is None:  # a worker that is not the chief: the chief saved
        saved = f"the chief saved ckpt-{itr}" if itr else "no iteration done yet"
    else:
        saved = f"{state.latest_checkpoint} saved" if state.latest_checkpoint else "no iteration done yet"
    command = "the same command" if strategy is None or len(strategy.extended.worker_devices) == \
        strategy.num_replicas_in_sync else "the same command on every worker"
    return (f"stopped by {signal_name(signum)} after iteration {itr} ({itr - start} run by this start): {saved}; "
            f"run {command} to resume at iteration {itr}")


def time_left(iteration_seconds, iterations_left):
    """Seconds for `iterations_left` more iterations at the median of the iterations this start
    ran (a resumed run has no times for earlier ones): an iteration that a pause (SIGSTOP) or a
    busy machine stretched does not inflate it, as a mean would."""
    return statistics.median(iteration_seconds) * iterations_left if iteration_seconds else 0.0


def signal_name(signum):
    import signal
    return signal.Signals(signum).name
