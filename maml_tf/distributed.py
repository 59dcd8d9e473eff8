"""MAML on a tf.distribute strategy: the meta-batch split by task across replicas.

Replica r of R takes tasks [r n, (r + 1) n) of the iteration's batch (n = tasks / R; every
process draws the same batch from the same seeded stream and keeps its slices, so the tasks of
an iteration do not depend on R). It adapts them exactly as the single-device learner does
(batch norm normalises each task's own batch: no cross-replica statistics, as in the original)
and takes the gradient of the mean of its tasks' query losses, g_r. The meta-gradient

    grad_theta (1/T) sum_{i=1..T} L_i(f_theta'_i) = (1/R) sum_r g_r      (all g_r over n tasks)

is one batched all-reduce (MEAN, with the logged means); it is clipped and applied by the one
Adam in cross-replica context.
The variables and Adam's moments are mirrored, so every replica holds the same values.
(Keras' `apply_gradients` called inside `strategy.run` would sum the replicas' gradients a
second time; that is why the update is applied outside it.)

Evaluation splits the tasks the same way and gathers the per-task scores in task order.
"""
import numpy as np
import tensorflow as tf

from maml_tf import maml
from report.distribution import per_replica_count

_MEAN = tf.distribute.ReduceOp.MEAN


class DistributedLearner:
    """A `MetaLearner` built under `strategy.scope()`, stepped on all replicas of `strategy`.

    Offers what the training loop and the test use: `train_step`, `pretrain_step` and
    `evaluate`, taking the same numpy [tasks, ...] batches as the learner; the rest (model,
    variables, optimisers, settings) is the learner's."""

    def __init__(self, learner, strategy):
        if getattr(learner, "jit_compile", False):
            raise ValueError("DistributedLearner compiles its own graph steps: build the learner without jit_compile")
        self.learner, self.strategy = learner, strategy
        self._train = tf.function(self._train_step, autograph=False)
        self._gradients = tf.function(self._reduced_gradients, autograph=False)
        self._pretrain = tf.function(self._pretrain_step, autograph=False)
        self._adapt = tf.function(self._adapt_step, autograph=False)

    def __getattr__(self, name):
        return getattr(self.learner, name)

    @property
    def num_replicas(self):
        return self.strategy.num_replicas_in_sync

    def train_step(self, support, query):
        """One meta-update on the whole batch; returns its Scores' means over all tasks."""
        return self._train(*self._split(support, query, flag="meta_batch_size"))

    def pretrain_step(self, support):
        """One step of the pretrained baseline on the whole batch; returns its mean loss."""
        return self._pretrain(*self._split(support, flag="meta_batch_size"))

    def evaluate(self, support, query, steps):
        """Per-task Scores (numpy, task order) after 1..`steps` inner steps, weights untouched.
        A batch that does not divide across the replicas is padded with copies of its last
        task, whose scores are dropped."""
        tasks = len(support[0])
        padded = -tasks % self.num_replicas
        if padded:
            support, query = (tuple(_pad(a, padded) for a in pair) for pair in (support, query))
        scores = self._adapt(*self._split(support, query, flag="evaluation tasks (padded)"), steps)
        return maml.Scores(*(value.numpy()[:tasks] for value in scores))

    def _split(self, *pairs, flag):
        """Each (inputs, labels) pair as per-replica values holding the replica's tasks."""
        arrays = [np.asarray(a) for pair in pairs for a in pair]
        n = per_replica_count(len(arrays[0]), self.strategy, flag)

        def replica_slice(context):
            r = context.replica_id_in_sync_group
            return tuple(tf.constant(a[r * n:(r + 1) * n]) for a in arrays)

        values = self.strategy.experimental_distribute_values_from_function(replica_slice)
        return tuple((values[2 * i], values[2 * i + 1]) for i in range(len(pairs)))

    def meta_gradients(self, support, query):
        """(the Scores' means over all tasks, the meta-gradient): the all-reduced mean of the
        replicas' gradients, before clipping. (What `train_step` applies; for tests.)"""
        return self._gradients(*self._split(support, query, flag="meta_batch_size"))

    def _reduced_gradients(self, support, query):
        def replica_gradients(support, query):
            scores, gradients = self.learner.meta_gradients(support, query, score_every_step=False)
            return _all_reduce_mean((scores.mean(), gradients))

        means, gradients = self._first_replica(self.strategy.run(replica_gradients, args=(support, query)))
        return maml.Scores(*means), gradients

    def _train_step(self, support, query):
        means, gradients = self._reduced_gradients(support, query)
        self.learner.apply_meta_gradients(gradients)
        return means

    def _pretrain_step(self, support):
        def replica_gradients(support):
            return _all_reduce_mean(self.learner.pretrain_gradients(support))

        loss, gradients = self._first_replica(self.strategy.run(replica_gradients, args=(support,)))
        self.learner.apply_pretrain_gradients(gradients)
        return loss

    def _adapt_step(self, support, query, steps):
        def replica_scores(support, query):
            weights = [tf.convert_to_tensor(v) for v in self.learner.variables]
            return self.learner.evaluate_tasks(weights, support, query, steps)

        scores = self.strategy.run(replica_scores, args=(support, query))
        return maml.Scores(*(self.strategy.gather(value, axis=0) for value in scores))

    def _first_replica(self, values):
        """The all-reduced values (the same on every replica) as plain tensors."""
        return tf.nest.map_structure(lambda v: self.strategy.experimental_local_results(v)[0], values)


def _all_reduce_mean(values):
    """The mean over replicas of every tensor of `values`, in one batched all-reduce (packed
    into few collectives: about 6x faster between two processes than one per tensor,
    benchmarks/distribute.py)."""
    return tf.distribute.get_replica_context().all_reduce(_MEAN, values)


def _pad(array, count):
    return np.concatenate([array, np.repeat(array[-1:], count, axis=0)], axis=0)
