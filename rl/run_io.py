"""Run directory I/O: config, checkpoints (with RNG state), progress.csv.

Every file is written atomically (`report.files`), so an interrupted run never
leaves a half-written output. TensorFlow is imported where checkpoints are touched, so
reading a config.json (and its errors) stays quick.

Checkpoints: what is on disk is the truth. They are found by their files
(`checkpoints/ckpt-<N>.index` / `.data-*`), so a copied run whose TF `checkpoint`
state file is missing is still found, and every one used is read back whole
first (TensorFlow's per-tensor checksums) and must hold finite values:

  - rl.evaluate (`RunState.restore`) refuses a damaged newest checkpoint with an
    error naming it (`DamagedFile`), never silently evaluating an older one;
  - rl.train (`RunState.resume`) falls back to the newest intact checkpoint and
    renames each newer damaged one aside to `ckpt-<N>.damaged.*` (`.damaged2.*`,
    ... if that name is taken) with a warning naming it: nothing is deleted or
    overwritten, and when training reaches iteration N again it saves a fresh
    `ckpt-<N>` beside the kept damaged files.

A failed save (disk full, ...) removes what it wrote of the new checkpoint and
raises `StorageError`; the earlier checkpoints stay intact.
"""
import csv
import glob
import json
import os
import re
import shutil
import types

import numpy as np
from absl import logging

from report.files import (atomic_open, atomic_write_text, read_json_object, remove_temporary_files, rename_aside,
                          row_length_error)
from report.resume import changed_settings
from rl.config import ABSENT, DERIVED, RESUMABLE_CHANGES, TrainConfig, setting_error

CONFIG = "config.json"
PROGRESS = "progress.csv"
CKPT_DIR = "checkpoints"
_CKPT_FILE = re.compile(r"ckpt-(\d+)\.(index|data-\d+-of-\d+)")


def checkpoint_number(prefix):
    """N of a checkpoint path `.../ckpt-<N>`."""
    return int(re.fullmatch(r"ckpt-(\d+)", os.path.basename(prefix)).group(1))


class RunError(Exception):
    """A fault of the run directory or of the run, said in one line (the entry points print it)."""


class ConfigMismatch(RunError, ValueError):
    """Resuming a run with other training settings than it was started with."""


class DamagedFile(RunError, ValueError):
    """A config.json or checkpoint that cannot be read back whole."""


class MissingFile(RunError, FileNotFoundError):
    """No config.json / no checkpoint where one is needed."""


class StorageError(RunError, OSError):
    """Writing an output failed (disk full, unwritable, ...); what was saved before is intact."""


def write_config(logdir, record):
    """Write config.json (`rl.config.run_record`), keys sorted."""
    path = os.path.join(logdir, CONFIG)
    try:
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    except OSError as e:
        raise StorageError(f"could not write {path}: {e.strerror or e}") from None


def check_resume_config(logdir, record):
    """Raise ConfigMismatch naming every setting of `record` (a config.json dict) that differs
    from the run's config.json, except the `RESUMABLE_CHANGES` and `DERIVED` keys of
    `rl.config`; keys a config.json lacks count as their `ABSENT` value."""
    old, new = {**ABSENT, **read_config(logdir)}, {**ABSENT, **record}
    keys = (set(old) | set(new)) - set(RESUMABLE_CHANGES) - set(DERIVED)
    message = changed_settings(logdir, old, new, sorted(keys))
    if message:
        raise ConfigMismatch(message)


# What rl.train keeps in a run directory, and what a killed start leaves there: the temporary
# files of its atomic writes (`config.json.tmp<pid>`, ...) and `check_writable`'s probe.
RUN_ENTRIES = (CONFIG, PROGRESS, CKPT_DIR, "tb", ".lock")
_RUN_LEFTOVER = re.compile(rf"({re.escape(CONFIG)}|{re.escape(PROGRESS)})\.tmp\d+|\.write_test\d+")


def check_run_directory(logdir):
    """RunError if `logdir` exists, holds no config.json and holds anything rl.train does not
    write (another program's run, a home folder): training there would mix its files with
    ours, and starting removes `*.tmp<digits>` files."""
    if not os.path.isdir(logdir) or os.path.exists(os.path.join(logdir, CONFIG)):
        return
    foreign = sorted(n for n in os.listdir(logdir) if n not in RUN_ENTRIES and not _RUN_LEFTOVER.fullmatch(n))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise RunError(f"--logdir={logdir} holds {shown} and no config.json: not an rl.train run directory; "
                       "give a new or empty --logdir")


def resumable_changes(logdir, record):
    """'--key: old -> new' for each `RESUMABLE_CHANGES` setting of `record` (a config.json
    dict) that differs from the run's config.json: what a resume changes (and config.json then
    records), to be said aloud."""
    old, new = {**ABSENT, **read_config(logdir)}, {**ABSENT, **record}
    return [f"--{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in RESUMABLE_CHANGES if old.get(k) != new.get(k)]


def read_config(logdir):
    """The run's config.json as a dict: MissingFile if there is none, DamagedFile (naming it) if it
    is not the JSON object rl.train writes (cut short, bytes flipped, keys missing)."""
    path = os.path.join(logdir, CONFIG)
    if not os.path.exists(path):
        raise MissingFile(f"{path} not found: is {logdir!r} a run directory written by rl.train?")
    try:
        record = read_json_object(path, "restore it from a copy or start a new --logdir")
    except ValueError as e:
        raise DamagedFile(str(e)) from None
    except OSError as e:
        raise DamagedFile(f"{path} cannot be read ({e.strerror or e})") from None
    required = {f for f in TrainConfig.__dataclass_fields__ if f not in ABSENT} | set(DERIVED)
    missing = sorted(required - set(record))
    if missing:
        raise DamagedFile(f"{path} is damaged (missing {', '.join(missing)}); restore it from a copy or "
                          "start a new --logdir")
    try:
        error = setting_error(types.SimpleNamespace(**{**ABSENT, **record}), max_seed=None)  # older runs: any seed
        if error is None and not all(isinstance(record[k], int) and record[k] >= 1 for k in ("obs_dim", "act_dim")):
            error = f"obs_dim and act_dim must be positive integers (got {record['obs_dim']!r}, {record['act_dim']!r})"
    except (TypeError, ValueError) as e:
        error = f"a value of the wrong type ({e})"
    if error:
        raise DamagedFile(f"{path} is damaged ({error.replace('--', '', 1)}); restore it from a copy or start a "
                          "new --logdir")
    return record


def _reason(error):
    """The readable part of an exception's message (TensorFlow's without its op and function names)."""
    text = (getattr(error, "message", None) or getattr(error, "strerror", None) or str(error) or
            type(error).__name__).strip().splitlines()[0]
    text = re.sub(r"^\{\{[^}]*\}\}\s*", "", re.sub(r"\s*\[Op:\w+\]$", "", text))
    if re.search(r"\.tempstate\d+; ", text):  # '<TF's temporary file>; File too large'
        text = text.rsplit("; ", 1)[1]
    return text[:200]


def checkpoint_dir(logdir):
    return os.path.join(logdir, CKPT_DIR)


def checkpoints_on_disk(ckpt_dir):
    """Numbers N of the `ckpt-<N>` checkpoints with any file on disk (index or data), ascending."""
    if not os.path.isdir(ckpt_dir):
        return []
    found = {int(m.group(1)) for m in map(_CKPT_FILE.fullmatch, os.listdir(ckpt_dir)) if m}
    return sorted(found)


def _files_of(prefix):
    return sorted(glob.glob(glob.escape(prefix) + ".index") + glob.glob(glob.escape(prefix) + ".data-*"))


def verify_checkpoint(prefix):
    """Read the checkpoint at `prefix` back whole (TensorFlow checks each tensor's checksum) and
    check its floating-point values are finite; DamagedFile naming the file otherwise."""
    import tensorflow as tf
    index = prefix + ".index"
    if not os.path.exists(index):
        raise DamagedFile(f"checkpoint {prefix} is damaged: its index file {index} is missing")
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = sorted(reader.get_variable_to_shape_map())
        for name in names:
            value = reader.get_tensor(name)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise DamagedFile(f"checkpoint {prefix} holds non-finite values ({name})")
    except DamagedFile:
        raise
    except (tf.errors.OpError, IndexError, ValueError, UnicodeDecodeError, OSError) as e:
        files = ", ".join(os.path.basename(f) for f in _files_of(prefix))
        raise DamagedFile(f"checkpoint {prefix} ({files}) is damaged: {_reason(e)}") from None


def remove_leftovers(logdir):
    """Remove what killed runs left: `*.tmp<pid>` files of atomic writes (run directory and
    checkpoints/), TensorFlow's `ckpt-<N>_temp` folders of an interrupted save and its
    `checkpoint.tmp<hex>` state files. Returns the removed names."""
    ckpt_dir = checkpoint_dir(logdir)
    removed = remove_temporary_files(logdir, of=[CONFIG, PROGRESS]) + remove_temporary_files(ckpt_dir, of=["checkpoint"])
    if os.path.isdir(ckpt_dir):
        for name in os.listdir(ckpt_dir):
            path = os.path.join(ckpt_dir, name)
            if re.fullmatch(r"ckpt-\d+_temp", name) and os.path.isdir(path):
                shutil.rmtree(path)
                removed.append(name)
            elif re.fullmatch(r"checkpoint\.tmp[0-9a-f]+", name):
                os.remove(path)
                removed.append(name)
    return removed


def _write_state_file(ckpt_dir, numbers):
    """The TF `checkpoint` state file listing `ckpt-<N>` for `numbers` (the last is the latest)."""
    lines = [f'model_checkpoint_path: "ckpt-{numbers[-1]}"'] + [f'all_model_checkpoint_paths: "ckpt-{n}"'
                                                                for n in numbers]
    atomic_write_text(os.path.join(ckpt_dir, "checkpoint"), "\n".join(lines) + "\n")


def _rename_aside(prefix):
    """Rename the checkpoint files `<prefix>.*` to `<prefix>.damaged.*` (`.damaged2.*`, ... if
    taken; nothing is overwritten). Returns the new prefix."""
    try:
        return rename_aside(prefix, _files_of(prefix))
    except OSError as e:
        raise StorageError(f"could not rename the damaged checkpoint {prefix} aside: {e}") from None


class RunState:
    """tf.train.Checkpoint of policy, optimiser, iteration and the numpy RNG states
    (sampling noise and the envs' start noise), so a resumed run continues exactly."""

    def __init__(self, logdir, model, optimizer=None, max_to_keep=3):
        import tensorflow as tf
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._rng_state = tf.Variable("", dtype=tf.string, trainable=False)
        self._env_rng_state = tf.Variable("", dtype=tf.string, trainable=False)
        parts = {"policy": model, "iteration": self.iteration, "rng_state": self._rng_state,
                 "env_rng_state": self._env_rng_state}
        if optimizer is not None:
            parts["optimizer"] = optimizer
        self.checkpoint = tf.train.Checkpoint(**parts)
        self.directory = checkpoint_dir(logdir)
        self.max_to_keep = max_to_keep
        self.latest_checkpoint = None
        self._manager = None

    @property
    def manager(self):
        """The CheckpointManager that saves (built on first use, after `resume` put the state
        file in order)."""
        import tensorflow as tf
        if self._manager is None:
            self._manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=self.max_to_keep)
        return self._manager

    def newest_checkpoint(self):
        """Path of the newest checkpoint on disk (found by its files, the state file not needed), or None."""
        numbers = checkpoints_on_disk(self.directory)
        return os.path.join(self.directory, f"ckpt-{numbers[-1]}") if numbers else None

    def find_resume_point(self):
        """(newest intact checkpoint or None, [DamagedFile of each newer damaged one]); changes nothing.
        MissingFile-free: no checkpoint at all gives (None, [])."""
        damaged = []
        for number in reversed(checkpoints_on_disk(self.directory)):
            prefix = os.path.join(self.directory, f"ckpt-{number}")
            try:
                verify_checkpoint(prefix)
            except DamagedFile as e:
                damaged.append((prefix, e))
                continue
            return prefix, damaged
        return None, damaged

    def resume(self, found, rng=None, env=None):
        """Resume from `find_resume_point()`'s result: rename the damaged checkpoints aside (a
        warning naming each), rewrite the state file to list the checkpoints on disk, restore
        the intact one. DamagedFile if there are damaged checkpoints and no intact one (nothing
        is changed then: move them away to start over). False if there is no checkpoint."""
        import tensorflow as tf
        path, damaged = found
        if damaged and path is None:
            raise DamagedFile(f"no intact checkpoint in {self.directory}: {damaged[0][1]}; move the damaged "
                              "checkpoints away to start the run over")
        for prefix, error in damaged:
            aside = _rename_aside(prefix)
            logging.warning("%s; kept as %s.*, resuming from %s", error, os.path.basename(aside), path)
        if path is None:
            return False
        numbers = checkpoints_on_disk(self.directory)
        state = tf.train.get_checkpoint_state(self.directory)
        listed = [] if state is None else [os.path.basename(p) for p in state.all_model_checkpoint_paths]
        if (state is None or os.path.basename(state.model_checkpoint_path) != os.path.basename(path)
                or listed != [f"ckpt-{n}" for n in numbers]):
            _write_state_file(self.directory, numbers)
        self._restore(path, rng, env)
        return True

    def restore(self, rng=None, require=False, env=None, path=None):
        """Restore the newest checkpoint on disk (or the one at `path`) into the model (and
        `rng`, and `env`'s start-noise RNG if it has one); False if there is none (MissingFile
        if `require`). DamagedFile naming it if it is damaged: never an older one in its place."""
        path = path or self.newest_checkpoint()
        if path is None:
            if require:
                raise MissingFile(f"no checkpoint in {self.directory}")
            return False
        verify_checkpoint(path)
        self._restore(path, rng, env)
        return True

    @staticmethod
    def check_newest(logdir):
        """Verify the run's newest checkpoint on disk (`verify_checkpoint`) and return its path;
        MissingFile if there is none."""
        numbers = checkpoints_on_disk(checkpoint_dir(logdir))
        if not numbers:
            raise MissingFile(f"no checkpoint in {checkpoint_dir(logdir)}")
        path = os.path.join(checkpoint_dir(logdir), f"ckpt-{numbers[-1]}")
        verify_checkpoint(path)
        return path

    def _restore(self, path, rng, env):
        import tensorflow as tf
        try:
            self.checkpoint.restore(path).expect_partial()
            # Every policy variable and the iteration must come from the checkpoint: one that
            # lacks them (another program's, or a hand-made one) would otherwise leave the fresh
            # random weights in place without a word.
            tf.train.Checkpoint(policy=self.checkpoint.policy, iteration=self.iteration).read(
                path).expect_partial().assert_existing_objects_matched()
        except AssertionError:
            raise DamagedFile(f"checkpoint {path} does not hold this run's policy and iteration (not written "
                              "by rl.train?)") from None
        except (tf.errors.OpError, ValueError) as e:
            raise DamagedFile(f"checkpoint {path} does not fit this run: {_reason(e)}") from None
        self.latest_checkpoint = path
        if rng is not None and self._rng_state.numpy():
            rng.bit_generator.state = json.loads(self._rng_state.numpy().decode())
        if hasattr(env, "set_rng_state") and self._env_rng_state.numpy():
            states, processes = json.loads(self._env_rng_state.numpy().decode()), len(env.rng_state())
            if len(states) == processes:
                env.set_rng_state(states)
            else:  # e.g. resumed with another --sampler_workers: a fresh noise stream, said aloud
                logging.warning("%s holds start-noise RNG states for %d env processes, this run has %d: "
                                "the start noise is not continued", path, len(states), processes)

    def save(self, iteration, rng=None, env=None):
        """Checkpoint the policy (and optimiser) with `iteration` and the RNG states. A failed
        write removes what it wrote of `ckpt-<iteration>` and raises StorageError; the earlier
        checkpoints stay intact."""
        import tensorflow as tf
        self.iteration.assign(iteration)
        if rng is not None:
            self._rng_state.assign(json.dumps(rng.bit_generator.state))
        if hasattr(env, "rng_state"):
            self._env_rng_state.assign(json.dumps(env.rng_state()))
        prefix = os.path.join(self.directory, f"ckpt-{iteration}")
        try:
            path = self.manager.save(checkpoint_number=iteration)
        except (tf.errors.OpError, OSError) as e:
            for f in _files_of(prefix):
                os.remove(f)
            shutil.rmtree(prefix + "_temp", ignore_errors=True)
            remove_leftovers(os.path.dirname(self.directory))
            reason = _reason(e)
            kept = f"the previous checkpoint {self.latest_checkpoint} is intact" if self.latest_checkpoint else \
                "no earlier checkpoint"
            raise StorageError(f"could not save checkpoint {prefix}: {reason}; {kept}") from None
        self.latest_checkpoint = path
        return path


class ProgressCsv:
    """rllab-style progress.csv; on resume keeps only rows before the restart."""

    def __init__(self, logdir, start_iteration=0):
        """Resuming at `start_iteration` keeps the rows before it, which must be whole (every
        column of the header, no more) and consecutive up to `start_iteration - 1`; else
        DamagedFile naming the file. Without the file a new one starts (said in the log)."""
        self.path = os.path.join(logdir, PROGRESS)
        self.rows = []
        if start_iteration > 0 and not os.path.exists(self.path):
            logging.info("%s not found: a new one starts at iteration %d", self.path, start_iteration)
        elif start_iteration > 0:
            move_away = "move it away to resume (a new one is then started at the resumed iteration)"
            try:
                with open(self.path, newline="", encoding="utf-8") as f:
                    reader = csv.DictReader(f)
                    for row in reader:
                        if int(row["Iteration"]) >= start_iteration:
                            continue
                        if row_length_error(row):
                            raise DamagedFile(f"{self.path}:{reader.line_num} is damaged (the row has "
                                              f"{row_length_error(row)} fields than the header); {move_away}")
                        self.rows.append(row)
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, csv.Error) as e:
                if isinstance(e, DamagedFile):
                    raise
                raise DamagedFile(f"{self.path} is damaged ({e or type(e).__name__}); {move_away}") from None
            iterations = [int(r["Iteration"]) for r in self.rows]
            if iterations and iterations != list(range(start_iteration - len(iterations), start_iteration)):
                raise DamagedFile(f"{self.path} is damaged (its rows before the resumed iteration {start_iteration} "
                                  f"are not iterations ..{start_iteration - 1} once each in order); {move_away}")

    def append(self, row):
        """Add a row and rewrite the file (columns: first seen first). StorageError if the write
        fails (the previous file is kept whole)."""
        self.rows.append(row)
        columns = list(self.rows[0].keys())
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        try:
            with atomic_open(self.path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=columns, restval="")
                writer.writeheader()
                writer.writerows(self.rows)
        except OSError as e:
            self.rows.pop()
            raise StorageError(f"could not write {self.path}: {e.strerror or e}; the previous rows are kept") from None
