"""Run directory I/O: config, checkpoints (with RNG state), progress.csv.

Every file is written atomically (`report.files`), so an interrupted run never
leaves a half-written output.
"""
import csv
import json
import os

import tensorflow as tf
from absl import logging

from report.files import atomic_open, atomic_write_text
from rl.config import ABSENT, DERIVED, RESUMABLE_CHANGES

CONFIG = "config.json"
PROGRESS = "progress.csv"
CKPT_DIR = "checkpoints"


def write_config(logdir, record):
    """Write config.json (`rl.config.run_record`), keys sorted."""
    atomic_write_text(os.path.join(logdir, CONFIG), json.dumps(record, indent=2, sort_keys=True) + "\n")


class ConfigMismatch(ValueError):
    """Resuming a run with other training settings than it was started with."""


def check_resume_config(logdir, record):
    """Raise ConfigMismatch naming every setting of `record` (a config.json dict) that differs
    from the run's config.json, except the `RESUMABLE_CHANGES` and `DERIVED` keys of
    `rl.config`; keys a config.json lacks count as their `ABSENT` value."""
    old, new = {**ABSENT, **read_config(logdir)}, {**ABSENT, **record}
    keys = (set(old) | set(new)) - set(RESUMABLE_CHANGES) - set(DERIVED)
    differ = sorted(k for k in keys if old.get(k) != new.get(k))
    if differ:
        said = ", ".join(f"--{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ)
        raise ConfigMismatch(f"{logdir} was trained with other settings ({said}); resume it with its own "
                             "settings or use a new --logdir")


def read_config(logdir):
    """The run's config.json as a dict."""
    path = os.path.join(logdir, CONFIG)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {logdir!r} a run directory written by rl.train?")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class RunState:
    """tf.train.Checkpoint of policy, optimiser, iteration and the numpy RNG states
    (sampling noise and the envs' start noise), so a resumed run continues exactly."""

    def __init__(self, logdir, model, optimizer=None, max_to_keep=3):
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._rng_state = tf.Variable("", dtype=tf.string, trainable=False)
        self._env_rng_state = tf.Variable("", dtype=tf.string, trainable=False)
        parts = {"policy": model, "iteration": self.iteration, "rng_state": self._rng_state,
                 "env_rng_state": self._env_rng_state}
        if optimizer is not None:
            parts["optimizer"] = optimizer
        self.checkpoint = tf.train.Checkpoint(**parts)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(logdir, CKPT_DIR),
                                                  max_to_keep=max_to_keep)

    def restore(self, rng=None, require=False, env=None):
        """Restore the latest checkpoint into the model (and `rng`, and `env`'s start-noise
        RNG if it has one); False if there is no checkpoint."""
        path = self.manager.latest_checkpoint
        if path is None:
            if require:
                raise FileNotFoundError(f"no checkpoint in {self.manager.directory}")
            return False
        self.checkpoint.restore(path).expect_partial()
        if rng is not None and self._rng_state.numpy():
            rng.bit_generator.state = json.loads(self._rng_state.numpy().decode())
        if hasattr(env, "set_rng_state") and self._env_rng_state.numpy():
            states, processes = json.loads(self._env_rng_state.numpy().decode()), len(env.rng_state())
            if len(states) == processes:
                env.set_rng_state(states)
            else:  # e.g. resumed with another --sampler_workers: a fresh noise stream, said aloud
                logging.warning("%s holds start-noise RNG states for %d env processes, this run has %d: "
                                "the start noise is not continued", path, len(states), processes)
        return True

    def save(self, iteration, rng=None, env=None):
        """Checkpoint the policy (and optimiser) with `iteration` and the RNG states."""
        self.iteration.assign(iteration)
        if rng is not None:
            self._rng_state.assign(json.dumps(rng.bit_generator.state))
        if hasattr(env, "rng_state"):
            self._env_rng_state.assign(json.dumps(env.rng_state()))
        return self.manager.save(checkpoint_number=iteration)


class ProgressCsv:
    """rllab-style progress.csv; on resume keeps only rows before the restart."""

    def __init__(self, logdir, start_iteration=0):
        self.path = os.path.join(logdir, PROGRESS)
        self.rows = []
        if start_iteration > 0 and os.path.exists(self.path):
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["Iteration"]) < start_iteration]

    def append(self, row):
        """Add a row and rewrite the file (columns: first seen first)."""
        self.rows.append(row)
        columns = list(self.rows[0].keys())
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        with atomic_open(self.path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
