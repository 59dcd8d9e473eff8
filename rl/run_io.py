"""Run directory I/O: config, checkpoints (with RNG state), progress.csv.

Every file is written to a temporary name and renamed, so an interrupted run
never leaves a half-written output.
"""
import csv
import io
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

CONFIG = "config.json"
PROGRESS = "progress.csv"
CKPT_DIR = "checkpoints"


def atomic_write(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def write_config(logdir, config):
    atomic_write(os.path.join(logdir, CONFIG), json.dumps(config, indent=2, sort_keys=True) + "\n")


# Settings that may change when a run is resumed (they do not change what is trained),
# values written by rl.trainer itself, and the defaults of optional keys (older runs did
# not record them).
RESUMABLE_CHANGES = ("n_itr", "keep_checkpoints", "sampler_workers")
DERIVED = ("obs_dim", "act_dim", "oracle")
CONFIG_DEFAULTS = {"batch_in_steps": False, "collector_workers": 1, "sampler_workers": 0}


class ConfigMismatch(ValueError):
    """Resuming a run with other training settings than it was started with."""


def check_resume_config(logdir, config):
    """Raise ConfigMismatch naming every setting that differs from the run's config.json."""
    old, new = {**CONFIG_DEFAULTS, **read_config(logdir)}, {**CONFIG_DEFAULTS, **config}
    keys = (set(old) | set(new)) - set(RESUMABLE_CHANGES) - set(DERIVED)
    differ = sorted(k for k in keys if old.get(k) != new.get(k))
    if differ:
        said = ", ".join(f"--{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ)
        raise ConfigMismatch(f"{logdir} was trained with other settings ({said}); resume it with its own "
                             "settings or use a new --logdir")


def read_config(logdir):
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
        self.rows.append(row)
        columns = list(self.rows[0].keys())
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write(self.path, buf.getvalue())


def rng_from_seed(seed):
    return np.random.default_rng(seed)
