"""The per-task reference the batched meta-learner is checked against.

`ReferenceLearner` adapts one task at a time with the Keras model itself
(`model.stateless_call` on each task's fast weights), through the same `maml.adapt_and_score`,
and stacks the results: nothing of `batched_forward`, no task axis, each loss on one task. Slow
(a Python loop over tasks and tens of small ops per task per layer), but obviously what the
paper's Algorithm 2 says, so the batched path must agree with it to round-off
(tests/test_batched.py). tests/original/harness.py and benchmarks/meta_step.py use it too.
"""
import numpy as np
import tensorflow as tf

from maml_tf import maml
from maml_tf.meta_learner import MetaLearner
from maml_tf.models import stateless_forward


class ReferenceLearner(MetaLearner):
    """MetaLearner whose `adapt_tasks` loops over tasks on the Keras model."""

    def _build_forward(self, model):
        return stateless_forward(model)

    def adapt_tasks(self, weights, support, query, steps, score_every_step=True):
        results = [maml.adapt_and_score(self._forward, self.loss_fn, self.task_accuracy, weights,
                                        (support[0][t], support[1][t]), (query[0][t], query[1][t]), self.update_lr,
                                        steps, self.first_order, self.adaptable, score_every_step)
                   for t in range(support[0].shape[0])]
        scores = maml.Scores(*(tf.stack(values) for values in zip(*(r[0] for r in results))))
        return scores, tf.stack([r[1] for r in results])

    def evaluate_tasks(self, weights, support, query, steps):
        """The plain per-task loop of `adapt_tasks`, every step unrolled."""
        return self.unrolled_evaluate_tasks(weights, support, query, steps)

    def evaluate(self, support, query, steps):
        """One task per call of a single-task graph, so that tracing stays small however many
        tasks are scored."""
        per_task = [super(ReferenceLearner, self).evaluate((support[0][t:t + 1], support[1][t:t + 1]),
                                                           (query[0][t:t + 1], query[1][t:t + 1]), steps)
                    for t in range(len(support[0]))]
        return maml.Scores(*(np.concatenate(values) for values in zip(*per_task)))


def learner_from(learner, cls=ReferenceLearner):
    """A `cls` learner on the same model and settings as `learner` (sharing its variables)."""
    return cls(learner.model, learner.loss_fn, update_lr=learner.update_lr, num_inner_steps=learner.num_inner_steps,
               first_order=learner.first_order, clip_value=learner.clip_value,
               classification=learner.classification,
               meta_lr=float(learner.meta_optimizer.learning_rate.numpy()))
