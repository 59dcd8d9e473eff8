"""Checkpoints holding weights, both optimisers' state and the iteration, so a resumed run
continues exactly (the original saved weights only and restarted Adam)."""
import os

import tensorflow as tf


class CheckpointNotFoundError(RuntimeError):
    pass


class Checkpointer:
    """`RUN_DIR/model-<iteration>` files, the newest `max_to_keep` kept."""

    def __init__(self, run_dir, learner, max_to_keep=10):
        self.run_dir = run_dir
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            model=learner.model,
            meta_optimizer=learner.meta_optimizer,
            pretrain_optimizer=learner.pretrain_optimizer,
            iteration=self.iteration,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, run_dir, max_to_keep=max_to_keep,
                                                  checkpoint_name="model")

    def save(self, iteration):
        """Save the state after `iteration` completed meta-iterations."""
        self.iteration.assign(iteration)
        return self.manager.save(checkpoint_number=iteration)

    def available(self):
        return sorted(int(p.rsplit("-", 1)[1]) for p in self.manager.checkpoints)

    def restore(self, iteration=-1, required=False):
        """Restore the newest checkpoint (or `model-<iteration>`); returns its iteration.

        Returns 0 when there is none and `required` is False; raises a one-line
        CheckpointNotFoundError otherwise.
        """
        if iteration is not None and iteration >= 0:
            path = os.path.join(self.run_dir, f"model-{iteration}")
            if not tf.io.gfile.exists(path + ".index"):
                raise CheckpointNotFoundError(
                    f"no checkpoint model-{iteration} in {self.run_dir} (available: {self.available() or 'none'})")
        else:
            path = self.manager.latest_checkpoint
            if path is None:
                if required:
                    raise CheckpointNotFoundError(
                        f"no checkpoint in {self.run_dir}: train first (same flags with --train=True) "
                        f"or point --logdir at a directory holding this run")
                return 0
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.iteration.numpy())
