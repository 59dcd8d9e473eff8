"""Checkpoints holding weights, both optimisers' state and the iteration, so a resumed run
continues exactly (the original saved weights only and restarted Adam).

What is on disk is the truth: checkpoints are found by their `model-<N>.index` files, so a
copied run whose `checkpoint` state file is missing is still found. A damaged checkpoint (cut
short, bytes flipped) is reported by name; resuming steps back to the newest intact one and
renames the damaged files aside (`model-<N>.damaged.*`), never deleting or overwriting them.
Weights that are not finite are never saved.
"""
import glob
import os
import re
import shutil

import numpy as np
import tensorflow as tf

from report.files import atomic_write_text, new_dated_folder, rename_aside


class CheckpointNotFoundError(RuntimeError):
    pass


class CheckpointDamagedError(RuntimeError):
    """A checkpoint's files cannot be read back."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that reads back whole but does not fit this run's model and optimisers
    (another configuration's, or another program's): never skipped or renamed aside."""


class CheckpointWriteError(RuntimeError):
    """Saving failed (disk full, ...); the checkpoints saved before are intact."""


class NonFiniteWeightsError(RuntimeError):
    """The weights hold NaN or infinity: there is nothing worth saving."""


# What TensorFlow raises on a checkpoint cut short or with flipped bytes.
_READ_ERRORS = (tf.errors.OpError, IndexError, ValueError, AssertionError, UnicodeDecodeError)

# Where a resume from an earlier checkpoint (--test_iter while training) keeps the newer ones.
SUPERSEDED = "superseded_checkpoints"


class Checkpointer:
    """`RUN_DIR/model-<iteration>` files, the newest `max_to_keep` kept."""

    def __init__(self, run_dir, learner, max_to_keep=10):
        self.run_dir = run_dir
        self.max_to_keep = max_to_keep
        self.superseded = None  # the folder a resume from an earlier checkpoint moved the newer ones to
        self.variables = learner.variables
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.state = [*learner.model.weights, *learner.meta_optimizer.variables,
                      *learner.pretrain_optimizer.variables, self.iteration]  # everything a checkpoint holds
        self.checkpoint = tf.train.Checkpoint(
            model=learner.model,
            meta_optimizer=learner.meta_optimizer,
            pretrain_optimizer=learner.pretrain_optimizer,
            iteration=self.iteration,
        )

    def path(self, iteration):
        return os.path.join(self.run_dir, f"model-{iteration}")

    def available(self):
        """Iterations of the checkpoints on disk (those with an index file), ascending."""
        found = (re.fullmatch(r"model-(\d+)\.index", os.path.basename(p))
                 for p in glob.glob(os.path.join(glob.escape(self.run_dir), "model-*.index")))
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, iteration):
        """Save the state after `iteration` completed meta-iterations (written to a temporary
        name and renamed by TensorFlow, so a failed save leaves the earlier checkpoints as
        they were). Keeps the newest `max_to_keep`."""
        if not all(bool(np.isfinite(v.numpy()).all()) for v in self.variables):
            raise NonFiniteWeightsError(f"the weights after iteration {iteration} are not finite; "
                                        f"not saving model-{iteration}")
        self.iteration.assign(iteration)
        os.makedirs(self.run_dir, exist_ok=True)
        try:
            path = self.checkpoint.write(self.path(iteration))
        except (tf.errors.OpError, OSError) as e:
            self.remove_leftovers()
            for partial in self._files_of(iteration):
                os.remove(partial)  # what this save wrote, not damaged files kept from before
            kept = [i for i in self.available() if i != iteration]
            raise CheckpointWriteError(
                f"could not write {self.path(iteration)} ({_reason(e)}); the checkpoints saved before are intact "
                f"(newest: {'model-%d' % kept[-1] if kept else 'none'})") from None
        for old in self.available()[:-self.max_to_keep]:
            for f in self._files_of(old):
                os.remove(f)
        self._write_state()
        return path

    def _write_state(self):
        """The `checkpoint` state file TensorFlow tools read (TensorBoard, tf.train.latest_checkpoint)."""
        iterations = self.available()
        if iterations:  # the CheckpointState text format, paths relative to the run directory
            lines = [f'model_checkpoint_path: "model-{iterations[-1]}"']
            lines += [f'all_model_checkpoint_paths: "model-{i}"' for i in iterations]
            atomic_write_text(os.path.join(self.run_dir, "checkpoint"), "\n".join(lines) + "\n")

    def remove_leftovers(self):
        """Remove what an interrupted save left: TensorFlow's `*_temp` folders."""
        for leftover in glob.glob(os.path.join(glob.escape(self.run_dir), "model-*_temp*")):
            shutil.rmtree(leftover, ignore_errors=True) if os.path.isdir(leftover) else os.remove(leftover)

    def restore(self, iteration=-1, required=False):
        """Restore `model-<iteration>` (or, for -1/None, the newest checkpoint); returns its
        iteration. Returns 0 when there is none and `required` is False; raises a one-line
        CheckpointNotFoundError otherwise, and CheckpointDamagedError naming a damaged file."""
        available = self.available()
        if iteration is not None and iteration >= 0:
            if iteration not in available:
                data = glob.glob(glob.escape(self.path(iteration)) + ".data-*")
                if data:
                    raise CheckpointDamagedError(f"{self.path(iteration)}.index is missing (the data file is there): "
                                                 f"the checkpoint is damaged")
                raise CheckpointNotFoundError(
                    f"no checkpoint model-{iteration} in {self.run_dir} (available: {available or 'none'})")
        elif not available:
            if required:
                raise CheckpointNotFoundError(
                    f"no checkpoint in {self.run_dir}: train first (same flags with --train=True) "
                    f"or point --logdir at a directory holding this run")
            return 0
        else:
            iteration = available[-1]
        return self._read(iteration)

    def _read(self, iteration):
        """Read the checkpoint back whole first (TensorFlow checks each tensor's checksum:
        CheckpointDamagedError), then restore every object of ours from it: one that does not
        fit (other shapes, objects missing) is CheckpointMismatchError, not damage."""
        try:
            reader = tf.train.load_checkpoint(self.path(iteration))
            for name in reader.get_variable_to_shape_map():
                reader.get_tensor(name)
        except _READ_ERRORS as e:
            raise CheckpointDamagedError(f"{self.path(iteration)} is damaged and cannot be read ({_reason(e)})") from None
        try:
            # Every object of ours must be restored; extra values (the `save_counter` that
            # checkpoints written by earlier versions hold) are ignored without a warning.
            self.checkpoint.read(self.path(iteration)).assert_existing_objects_matched().expect_partial()
        except _READ_ERRORS as e:
            raise CheckpointMismatchError(
                f"{self.path(iteration)} does not fit this run's model ({_reason(e)}): it was written with other "
                f"settings (--datasource, --conv, ...) or by another program; use another --logdir or move it "
                f"away") from None
        return int(self.iteration.numpy())

    def resume_from(self, iteration, warn=print, keep_with_superseded=()):
        """Restore `model-<iteration>` to resume from it, as the original's `--test_iter` did
        while training (main.py: `model_file = ... 'model' + str(test_iter)`): it must be there
        and whole (one-line errors otherwise, nothing moved); every file of a newer checkpoint,
        which the resumed run would write over (whole, damaged or renamed aside as damaged), is
        first moved to `superseded_checkpoints/<time>/` (`self.superseded`) with a warning naming
        them; the files `keep_with_superseded` (e.g. the record of their training) are copied
        there first. Returns the iteration."""
        self.remove_leftovers()
        restored = self.restore(iteration, required=True)
        newer = sorted({n for n, _ in self._numbered_files() if n > iteration})
        if newer:
            self.superseded = self._move_aside(newer, keep_with_superseded)
            warn(f"warning: resuming from model-{iteration} (--test_iter); the files of the newer "
                 f"checkpoints {', '.join('model-%d' % i for i in newer)} are kept in {self.superseded}")
        self._write_state()
        return restored

    def restore_for_resume(self, warn=print):
        """Restore the newest intact checkpoint (0 when there is none). Each damaged one on
        the way is renamed aside to `model-<N>.damaged.<suffix>` (nothing is deleted, and the
        resumed run cannot write over it) with a warning naming it; so is the data of a newer
        save cut short before its index, which a later save would write over."""
        self.remove_leftovers()
        restored = 0
        for iteration in reversed(self.available()):
            try:
                restored = self._read(iteration)
                break
            except CheckpointDamagedError as e:
                aside = self._rename_aside(iteration)
                warn(f"warning: {e}; kept as {aside}.*, trying the one before")
        for number in sorted({n for n, name in self._numbered_files()
                              if n > restored and re.fullmatch(r"model-\d+\.data-\d+-of-\d+", name)}):
            # data without an index (a save cut short before its index): a later save would write over it
            aside = self._rename_aside(number)
            warn(f"warning: {self.path(number)}.index is missing (the data file is there): the checkpoint is "
                 f"damaged; kept as {aside}.*")
        self._write_state()
        return restored

    def _numbered_files(self):
        """(N, file name) of every checkpoint file in the run directory: `model-<N>.index` and
        `.data-*-of-*`, whole or not, and the same renamed aside as damaged (`model-<N>.damaged*.`);
        nothing else (a user's `model-40.notes.txt`)."""
        if not os.path.isdir(self.run_dir):
            return []
        found = ((re.fullmatch(r"model-(\d+)\.(?:damaged\d*\.)?(?:index|data-\d+-of-\d+)", name), name)
                 for name in os.listdir(self.run_dir))
        return [(int(m.group(1)), name) for m, name in found if m and os.path.isfile(os.path.join(self.run_dir, name))]

    def _files_of(self, iteration):
        """The paths of `model-<iteration>`'s own files (index, data), not those renamed aside as damaged."""
        return [os.path.join(self.run_dir, name) for number, name in self._numbered_files()
                if number == iteration and ".damaged" not in name]

    def _move_aside(self, iterations, copies=()):
        """Copy the files `copies`, then move every checkpoint file of `model-<N>` for each N
        (`model-<N>.damaged.*` included) into a new `superseded_checkpoints/<time>/` (renamed,
        nothing deleted); returns that folder."""
        try:
            folder = new_dated_folder(os.path.join(self.run_dir, SUPERSEDED))
            for path in copies:
                if os.path.exists(path):
                    shutil.copy2(path, folder)
            for number, name in self._numbered_files():
                if number in iterations:
                    os.rename(os.path.join(self.run_dir, name), os.path.join(folder, name))
        except OSError as e:
            raise CheckpointWriteError(f"could not move the checkpoints after the one resumed from aside in "
                                       f"{self.run_dir}: {e}") from None
        return folder

    def _rename_aside(self, iteration):
        """Rename `model-<N>.*` to `model-<N>.damaged.*` (`.damaged2.*`, ... if that name is
        taken: nothing is overwritten); returns the new prefix."""
        try:
            return rename_aside(self.path(iteration), self._files_of(iteration))
        except OSError as e:
            raise CheckpointWriteError(f"could not rename the damaged {self.path(iteration)} aside: {e}") from None


def _reason(error):
    """The first line of an error's message, without TensorFlow's op context."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0][:200]
