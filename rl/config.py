"""The one typed training config: `TrainConfig`. rl.train's flags, their defaults, the keys of
a run's config.json and the resume check are all derived from its fields.

Field metadata: `help` (the flag's help text); `resumable=True` for settings that may change
when a run is resumed (they do not change what is trained); `absent` for keys that runs from
before the setting existed did not record, with the value those runs used.
"""
import dataclasses
import math

MODES = ("maml", "pretrain", "oracle", "random")
ENVS = ("point", "cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir")
ACTIVATIONS = ("relu", "tanh")
# Seeds stay below 2**31: TensorFlow's op seeds and numpy's legacy RandomState take them whole.
MAX_SEED = 2**31 - 1
# Keys rl.trainer adds to config.json from the env (`run_record`); never compared on resume.
DERIVED = ("obs_dim", "act_dim", "oracle")

_NO_ABSENT = object()


def _setting(default, help, *, resumable=False, absent=_NO_ABSENT):
    metadata = {"help": help, "resumable": resumable}
    if absent is not _NO_ABSENT:
        metadata["absent"] = absent
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
    """What rl.train trains (defaults: rl.train's flag defaults; each paper experiment's values are
    in its flagfile, flags/rl_*.flags).

    Written to config.json as is (plus `DERIVED`); `from_dict` reads it back."""
    env: str = _setting("point", "Task family: point (2D navigation), cheetah_vel, cheetah_dir, "
                        "ant_vel, ant_dir (MuJoCo locomotion).")
    mode: str = _setting("maml", "maml | pretrain | oracle | random.")
    fast_lr: float = _setting(0.1, "Inner (adaptation) step size alpha.")
    meta_batch_size: int = _setting(40, "Tasks per meta-iteration.")
    fast_batch_size: int = _setting(20, "Trajectories per task for each step.")
    max_path_length: int = _setting(100, "Horizon.")
    n_itr: int = _setting(100, "Meta-iterations.", resumable=True)
    max_kl: float = _setting(0.01, "TRPO KL bound delta (the original's meta step_size).")
    discount: float = _setting(0.99, "Discount gamma.")
    gae_lambda: float = _setting(1.0, "GAE lambda.")
    seed: int = _setting(1, "Seed for the policy init, tasks and action noise.")
    hidden_sizes: list = _setting([100, 100], "Hidden layer sizes.")
    hidden_activation: str = _setting("relu", "relu | tanh.")
    cg_iters: int = _setting(10, "Conjugate-gradient iterations.")
    cg_damping: float = _setting(1e-5, "Damping added to each Hessian-vector product.")
    hvp_base_eps: float = _setting(1.0, "Finite-difference HVP base epsilon (original's effective value 1).")
    pretrain_lr: float = _setting(1e-3, "Adam learning rate of --mode=pretrain.")
    keep_checkpoints: int = _setting(3, "Checkpoints to keep.", resumable=True)
    sampler_workers: int = _setting(
        0, "MuJoCo envs: step them in this many worker processes (0 = in this process, whose "
        "MuJoCo batch already uses every CPU and samples faster).", resumable=True, absent=0)
    collector_workers: int = _setting(
        1, "With --batch_in_steps: keep the paths rllab's parallel collector with this many "
        "workers (its n_parallel) keeps, i.e. also those still running when the step budget "
        "is reached. 1 (one sampler) is what produced the paper's results; the released "
        "MuJoCo launch scripts' n_parallel=8 is --collector_workers=8 (27 paths of 200 "
        "steps per task instead of 20).", absent=1)
    jit_compile: bool = _setting(
        None, "Compile the TRPO step's loss, KL and their gradients with XLA (same algorithm, "
        "float32 round-off differs; faster on some hosts, see benchmarks/trpo_step.py). Unset: a run "
        "with at least 20 iterations left times one KL gradient both ways on its first batch and keeps "
        "XLA if its median is more than 5 % shorter, else graphs; --jit_compile / --nojit_compile decide. "
        "Modes maml and oracle; not with --distribute.", resumable=True, absent=False)
    batch_in_steps: bool = _setting(
        True, "Count each task's batch in steps like rllab (whole paths until fast_batch_size * "
        "max_path_length steps; early-terminating paths give more paths); "
        "false = exactly fast_batch_size paths.", absent=False)

    @classmethod
    def from_dict(cls, values):
        """A config from a plain dict (config.json or a caller's): keys of `ABSENT` it lacks take
        the value older runs used, any other key it lacks its default (every config.json rl.train
        wrote holds all the others); `DERIVED` keys are ignored; an unknown key is an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known - set(DERIVED)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**{**ABSENT, **{k: v for k, v in values.items() if k in known}})

    def to_dict(self):
        """The config as a plain dict (what config.json holds, without `DERIVED`)."""
        return dataclasses.asdict(self)


FIELDS = dataclasses.fields(TrainConfig)
RESUMABLE_CHANGES = tuple(f.name for f in FIELDS if f.metadata["resumable"])
ABSENT = {f.name: f.metadata["absent"] for f in FIELDS if "absent" in f.metadata}


def setting_error(c, max_seed=MAX_SEED):
    """A one-line message for the first out-of-range setting of `c` (parsed flags, or a
    config.json's values as attributes), or None. A value of the wrong type raises TypeError or
    ValueError. `max_seed` None: no upper bound (a config.json of a run started before there was one)."""
    if c.env not in ENVS:
        return f"--env={c.env!r} is not supported (supported: {', '.join(ENVS)})"
    if c.mode not in MODES:
        return f"--mode={c.mode!r} must be one of {', '.join(MODES)}"
    if c.collector_workers < 1:
        return f"--collector_workers must be >= 1 (got {c.collector_workers})"
    if c.collector_workers > 1 and not c.batch_in_steps:
        return "--collector_workers > 1 needs --batch_in_steps (it emulates a step budget)"
    if c.sampler_workers < 0:
        return f"--sampler_workers must be >= 0 (got {c.sampler_workers})"
    for name in ("meta_batch_size", "fast_batch_size", "max_path_length", "cg_iters", "keep_checkpoints"):
        if getattr(c, name) < 1:
            return f"--{name} must be >= 1 (got {getattr(c, name)})"
    if c.n_itr < 0:
        return f"--n_itr must be >= 0 (got {c.n_itr})"
    if c.seed < 0 or max_seed is not None and c.seed > max_seed:
        return f"--seed must be >= 0 and <= {max_seed} (got {c.seed})"
    for name in ("fast_lr", "max_kl", "hvp_base_eps", "pretrain_lr"):
        if not (getattr(c, name) > 0 and math.isfinite(getattr(c, name))):
            return f"--{name} must be > 0 and finite (got {getattr(c, name)})"
    if not 0 < c.discount <= 1:
        return f"--discount must be in (0, 1] (got {c.discount})"
    if not 0 <= c.gae_lambda <= 1:
        return f"--gae_lambda must be in [0, 1] (got {c.gae_lambda})"
    if not (c.cg_damping >= 0 and math.isfinite(c.cg_damping)):
        return f"--cg_damping must be >= 0 and finite (got {c.cg_damping})"
    shown = ",".join(map(str, c.hidden_sizes))
    try:
        sizes = [int(s) for s in c.hidden_sizes]
    except ValueError:
        return f"--hidden_sizes must be comma-separated integers (got {shown})"
    if not sizes or min(sizes) < 1:
        return f"--hidden_sizes must be positive integers (got {shown})"
    if c.hidden_activation not in ACTIVATIONS:
        return f"--hidden_activation must be {' or '.join(ACTIVATIONS)} (got {c.hidden_activation!r})"
    return None


def run_record(config, obs_dim, act_dim):
    """The dict rl.trainer writes to config.json: the config and the `DERIVED` keys."""
    return dict(config.to_dict(), obs_dim=obs_dim, act_dim=act_dim, oracle=config.mode == "oracle")


def define_flags(flags, flag_values=None):
    """Define one absl flag per `TrainConfig` field (same name, default and help), attributed to
    the calling module (so `python -m rl.train --help` lists them); in `flag_values` (absl's
    global FLAGS when None)."""
    flags.disclaim_key_flags()
    where = {} if flag_values is None else {"flag_values": flag_values}
    for f in FIELDS:
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        define = {str: flags.DEFINE_string, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  bool: flags.DEFINE_bool, list: flags.DEFINE_list}[f.type]
        define(f.name, [str(v) for v in default] if f.type is list else default, f.metadata["help"], **where)


# What a run trains, as a paper command sets it: the settings a resume may not change, but the seed.
TRAINED_SETTINGS = tuple(f.name for f in FIELDS if not f.metadata["resumable"] and f.name != "seed")


def define_train_flags(flags, flag_values=None):
    """Every flag of rl.train: `define_flags`, where the run is written (`--logdir`) and how it is
    distributed (report.distribution's), in `flag_values` (absl's global FLAGS when None)."""
    from report import distribution

    define_flags(flags, flag_values)
    flags.DEFINE_string("logdir", None, "Run directory (checkpoints, progress.csv, TensorBoard).",
                        **({} if flag_values is None else {"flag_values": flag_values}))
    distribution.define_flags(flags, flag_values)


def command_config(flagfile):
    """The `TrainConfig` an `rl.train --flagfile=FLAGFILE` command trains (the flagfile's values,
    the defaults elsewhere), read by `report.cli.read_flagfile` (this process's flags are
    untouched; a flag rl.train does not have is a ValueError naming it)."""
    from absl import flags

    from report.cli import read_flagfile

    return from_flags(read_flagfile(flagfile, lambda flag_values: define_train_flags(flags, flag_values), "rl.train"))


def from_flags(values):
    """A `TrainConfig` from parsed flag values (list flags are comma-separated integers)."""
    return TrainConfig(**{f.name: [int(s) for s in getattr(values, f.name)] if f.type is list
                          else getattr(values, f.name) for f in FIELDS})
