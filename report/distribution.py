"""Which devices a run uses: `--distribute=none|mirrored|multi_worker` as a tf.distribute strategy.

  none          no strategy at all: the single-device code path, unchanged (`make_strategy`
                returns None and callers keep their plain path);
  mirrored      `tf.distribute.MirroredStrategy` over this machine's GPUs, or, where there are
                none, over `--cpu_replicas` logical CPU devices (a stand-in for GPUs, to test
                the distributed path on a laptop; it does not make a CPU faster);
  multi_worker  `tf.distribute.MultiWorkerMirroredStrategy` across processes or machines, one
                replica per GPU of each process (or one for its CPU), the cluster read from the
                TF_CONFIG environment variable (worker 0 is the chief unless a "chief" task is
                listed).

Both packages split their meta-batch of tasks by replica and average over the global batch;
what they split and reduce is documented in `maml_tf.distributed` and `rl.distributed`. This
module holds what they share: building the strategy from the flags (with one-line errors and a
time limit on the workers joining), who the chief is, the even split of a batch, agreeing to
start (every process's checks passed, same training settings as the chief's), agreeing on a
stop, sending the chief's restored weights to every worker, and the one line for a lost worker.
"""
import json
import os

KINDS = ("none", "mirrored", "multi_worker")


def define_flags(flags, flag_values=None):
    """`--distribute`, `--cpu_replicas` and `--join_timeout` on an absl entry point (listed by its
    --help), in `flag_values` (absl's global FLAGS when None)."""
    flags.disclaim_key_flags()  # the flags belong to the calling module, not to this one
    where = {} if flag_values is None else {"flag_values": flag_values}
    flags.DEFINE_enum("distribute", "none", list(KINDS),
                      "none: one device (the default path); mirrored: tf.distribute.MirroredStrategy over this "
                      "machine's GPUs (or --cpu_replicas logical CPUs); multi_worker: "
                      "MultiWorkerMirroredStrategy across the processes listed in TF_CONFIG", **where)
    flags.DEFINE_integer("cpu_replicas", 0, "with --distribute=mirrored on a machine without GPUs: split the CPU "
                         "into this many logical devices, one replica each (for testing the distributed path; "
                         "ignored where there are GPUs)", **where)
    flags.DEFINE_integer("join_timeout", 600, "with --distribute=multi_worker: seconds to wait for every worker of "
                         "TF_CONFIG to start before giving up with one line (0: wait forever)", **where)


def flag_error(kind, cpu_replicas, environ=os.environ, join_timeout=0):
    """A one-line message for an unusable --distribute / --cpu_replicas / --join_timeout /
    TF_CONFIG, or None."""
    if join_timeout < 0:
        return f"--join_timeout must be >= 0 seconds (0: wait forever; got {join_timeout})"
    if kind not in KINDS:
        return f"--distribute must be one of {', '.join(KINDS)} (got {kind!r})"
    if cpu_replicas < 0:
        return f"--cpu_replicas must be >= 0 (got {cpu_replicas})"
    if cpu_replicas and kind != "mirrored":
        return f"--cpu_replicas is for --distribute=mirrored (got --distribute={kind})"
    if kind == "multi_worker":
        return tf_config_error(environ.get("TF_CONFIG"))
    return None


def tf_config_error(text):
    """What is wrong with a TF_CONFIG value for a multi-worker run, or None."""
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        return f"--distribute=multi_worker needs the TF_CONFIG environment variable ({example})"
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as e:
        return f"TF_CONFIG is not a cluster with this process's task ({type(e).__name__}: {e}); {example}"
    if "worker" not in cluster or not isinstance(members, list) or not 0 <= index < len(members):
        return f"TF_CONFIG: task {task['type']} {index} is not in the cluster {cluster}; {example}"
    return None


def split_cpu(replicas):
    """Make `replicas` logical CPU devices; must run before TensorFlow initialises its devices."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == replicas:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError:
        raise ValueError(f"--cpu_replicas={replicas}: TensorFlow's devices were initialised before the "
                         f"CPU could be split") from None


def make_strategy(kind, cpu_replicas=0, join_timeout=None, join_timeout_message=None):
    """The strategy for --distribute=`kind` (None for 'none'). Check `flag_error` first.

    multi_worker: building the strategy waits for every worker of TF_CONFIG to start, and
    TensorFlow waits forever, holding the interpreter and deaf to SIGTERM. With `join_timeout`
    seconds, a watchdog process prints `join_timeout_message` (one line) and kills this process
    if the workers have not all joined by then (`join_timeout_line`)."""
    if kind == "none":
        return None
    import tensorflow as tf

    if kind == "multi_worker":
        watchdog = _start_watchdog(join_timeout, join_timeout_message) if join_timeout else None
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        finally:
            if watchdog is not None:
                watchdog.kill()
                watchdog.wait()
    if cpu_replicas > 1:
        split_cpu(cpu_replicas)
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        devices = [d.name for d in gpus]
    else:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:max(cpu_replicas, 1)]
    return tf.distribute.MirroredStrategy(devices)


_WATCHDOG = """
import os, signal, sys, time
pid, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    time.sleep(0.2)
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(0)
sys.stderr.write(sys.argv[3] + "\\n")
sys.stderr.flush()
os.kill(pid, signal.SIGKILL)
"""


def _start_watchdog(seconds, message):
    """A process that prints `message` and kills this one after `seconds`, unless killed first."""
    import subprocess
    import sys

    message = message or f"not every worker of TF_CONFIG started within {seconds} s"
    return subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), message])


def join_timeout_line(program, seconds):
    """The one line printed when the workers did not all start within --join_timeout."""
    return (f"{program}: error: not every worker of TF_CONFIG started within --join_timeout={seconds} s; "
            f"start the same command on every worker listed there")


def quiet_lost_worker_logs(kind, environ=os.environ):
    """Before TensorFlow is imported, with multi_worker: raise TF's C++ log level from our
    default 2 to 3, so a lost worker shows our one line, not TensorFlow's error log."""
    if kind == "multi_worker" and environ.get("TF_CPP_MIN_LOG_LEVEL") == "2":
        environ["TF_CPP_MIN_LOG_LEVEL"] = "3"


def num_replicas(strategy):
    return 1 if strategy is None else strategy.num_replicas_in_sync


def is_chief(strategy):
    """True in the process that writes checkpoints and logs: always without a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    jobs = resolver.cluster_spec().as_dict()
    if "chief" in jobs:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def describe(strategy):
    """One line naming the strategy and its devices, for the start of a run."""
    if strategy is None:
        return "one device (--distribute=none)"
    workers = ""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.cluster_spec().as_dict():
        workers = (f", {len(resolver.cluster_spec().as_dict().get('worker', []))} workers; this is "
                   f"{resolver.task_type} {resolver.task_id}{' (chief)' if is_chief(strategy) else ''}")
    devices = ", ".join(getattr(strategy.extended, "worker_devices", ()))
    name = "MultiWorkerMirroredStrategy" if _is_multi_worker(strategy) else type(strategy).__name__
    return f"{name}: {strategy.num_replicas_in_sync} replicas{workers} (devices {devices})"


def per_replica_count(total, strategy, flag):
    """`total` tasks split evenly across the replicas; a ValueError naming `flag` if they do not divide."""
    replicas = num_replicas(strategy)
    if total % replicas:
        raise ValueError(f"--{flag}={total} does not split evenly across {replicas} replicas; use a multiple "
                         f"of {replicas} (each replica adapts the same number of tasks)")
    return total // replicas


def any_worker(strategy, flag):
    """True if `flag` is true in any process of the job (an all-reduce: every process must call
    it at the same point). Without a multi-worker strategy: `flag` itself."""
    if not _is_multi_worker(strategy):
        return bool(flag)
    import tensorflow as tf

    if not hasattr(strategy, "_maml_tf_vote"):  # compiled once: eager collectives are slow
        strategy._maml_tf_vote = tf.function(lambda value: strategy.reduce(
            tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(value,)), axis=None), autograph=False)
    return bool(strategy._maml_tf_vote(tf.constant(1.0 if flag else 0.0)).numpy() > 0)


def broadcast_from_chief(strategy, variables, iteration):
    """Give every process the chief's values of `variables` and its `iteration` (an int): after
    the chief restored a checkpoint, the workers need not read the chief's disk. Returns the
    chief's iteration. Without a multi-worker strategy: nothing to send."""
    if not _is_multi_worker(strategy):
        return iteration
    import tensorflow as tf

    mask = 1.0 if is_chief(strategy) else 0.0
    sum_op = tf.distribute.ReduceOp.SUM

    def chief_values():
        context = tf.distribute.get_replica_context()
        values = [context.all_reduce(sum_op, tf.convert_to_tensor(v) * tf.cast(mask, v.dtype)) for v in variables]
        return values, context.all_reduce(sum_op, tf.constant(float(iteration) * mask, tf.float64))

    # compiled: eager collectives are slow
    values, chief_iteration = tf.function(lambda: strategy.run(chief_values), autograph=False)()
    for variable, value in zip(variables, values):
        variable.assign(strategy.experimental_local_results(value)[0])
    return int(round(float(strategy.experimental_local_results(chief_iteration)[0].numpy())))


def _is_multi_worker(strategy):
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def settings_digest(settings):
    """A 48-bit digest of a JSON-able dict (a run's training settings), for `agree_to_start`
    (small enough that a sum over a worker's replicas stays exact in int64)."""
    import hashlib

    text = json.dumps(settings, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big")


class JobStartError(ValueError):
    """Some process of a multi-worker job failed its start-up checks, or trains other settings."""


def _summed_over_processes(strategy, values):
    """Each of `values` (ints) summed over the job's processes: one all-reduce, in which every
    replica of a process votes its process's values (so the sums are divided back by the number
    of local replicas). Every process must call it with as many values."""
    import tensorflow as tf

    def vote():
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM,
                                                              tf.constant(values, tf.int64))

    votes = strategy.experimental_local_results(tf.function(lambda: strategy.run(vote), autograph=False)())[0].numpy()
    local = max(len(strategy.extended.worker_devices), 1)
    return [int(v) // local for v in votes]


def agree_to_start(strategy, failed, settings):
    """Every process of a multi-worker job calls this once, after its own start-up checks
    (`failed`: True if they failed here; the caller then raises its own error) and before the
    first other collective: one all-reduce of the failures and of the chief's digest of the
    training `settings` (a dict by flag name), and, if some process's settings differ, a second
    one of each setting's digests to name those that differ (when every process has the same
    setting names, as the same code gives). Raises JobStartError in a process whose checks
    passed if another process failed, or if its settings differ from the chief's; so no process
    waits on a collective that another has left, and no worker silently trains other settings.
    Without a multi-worker strategy: nothing to agree."""
    if not _is_multi_worker(strategy):
        return
    chief = is_chief(strategy)
    digest, names = settings_digest(settings), sorted(settings)
    names_digest = settings_digest({"names": names})
    failures, processes, chief_digest, digest_sum, chief_names, names_sum = _summed_over_processes(
        strategy, [1 if failed else 0, 1, digest if chief else 0, digest, names_digest if chief else 0, names_digest])
    differ = digest_sum != processes * chief_digest  # every process reaches the same verdicts
    mine, others = [], []
    if differ and names_sum == processes * chief_names:
        digests = [settings_digest({name: settings[name]}) for name in names]
        sums = _summed_over_processes(strategy, [*(digests if chief else [0] * len(names)), *digests])
        mine = [name for name, theirs, ours in zip(names, sums, digests) if theirs != ours]
        others = [name for name, total, ours in zip(names, sums[len(names):], digests) if total != processes * ours]
    if failed:
        return
    if failures:
        raise JobStartError(f"{failures} other process(es) of the job failed their start-up checks (see their "
                            f"output); nothing was run")
    if chief_digest != digest:
        raise JobStartError(f"this worker's training flags differ from the chief's{_naming(mine)}: start every "
                            f"worker of the job with the same command (only TF_CONFIG differs)")
    if differ:
        raise JobStartError(f"another worker's training flags differ from the chief's{_naming(others)} (see its "
                            f"output): start every worker of the job with the same command (only TF_CONFIG differs)")


def _naming(names):
    return f" ({', '.join(names)})" if names else ""


# What a collective raises when another process of the job is gone.
LOST_CONTACT_ERRORS = ("UnavailableError", "AbortedError", "CancelledError", "DeadlineExceededError")


def is_lost_contact(error, strategy_kind):
    """True for the errors of a collective whose peer died (multi_worker only)."""
    return strategy_kind == "multi_worker" and type(error).__name__ in LOST_CONTACT_ERRORS


def lost_contact_message(error):
    """The one line for a collective that failed because another process of the job is gone."""
    import re

    text = re.sub(r"\{\{[^}]*\}\}\s*", "", getattr(error, "message", None) or str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(error).__name__]
    named = [line for line in lines if re.search(r"unhealthy|aborted|unavailable|connect|reset|closed", line, re.I)]
    return (f"lost contact with another process of the job ({type(error).__name__}: {(named or lines)[0][:200]}); "
            f"it stopped or failed (see its output); once it is fixed, rerun the same command on every worker "
            f"to resume from the chief's newest checkpoint")


class AgreedStop:
    """A `report.stop.GracefulStop` whose `check()` stops every process of a multi-worker job at
    the same iteration: each check all-reduces whether any process received SIGINT / SIGTERM,
    and raises StopRequested everywhere if one did (with the signal received here, else
    SIGTERM), so the chief saves and no worker waits on a collective the others left."""

    def __init__(self, stop, strategy):
        self.stop, self.strategy = stop, strategy

    @property
    def signum(self):
        """The signal this process received (None if none): as `GracefulStop.signum`."""
        return self.stop.signum

    def check(self):
        import signal

        from report.stop import StopRequested

        if any_worker(self.strategy, self.stop.signum is not None):
            raise StopRequested(self.stop.signum or signal.SIGTERM)
