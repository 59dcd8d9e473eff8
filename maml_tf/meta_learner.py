"""MAML: inner-loop adaptation on fast weights and the compiled meta-step.

The model's trainable weights are split into adaptable ones (every kernel and bias) and norm
parameters, which the inner loop leaves alone but the outer optimiser updates, as in the
original. Inner steps run under their own `GradientTape` inside the outer tape, so the outer
gradient differentiates through them (second order) unless `stop_grad` cuts the inner
gradients (first order).

Two implementations of the same computation: the default (`batched=True`) adapts every task of
the batch at once, each adapted weight carrying a leading task axis (`batched_forward`); the
reference (`batched=False`) loops over tasks in Python, running the Keras model on each task's
fast weights. tests/test_batched.py checks that they agree to round-off.
"""
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from maml_tf.batched_forward import batched_forward
from maml_tf.losses import accuracy
from maml_tf.models import is_norm_variable


class Adaptation(NamedTuple):
    """What an inner loop measured, for one task (scalars) or a task batch ([tasks] tensors).
    Query entries follow steps 1..num_steps, or the last step only when not scoring every step."""

    support_loss: tf.Tensor  # before any step
    support_accuracy: tf.Tensor
    query_losses: list
    query_accuracies: list
    fast_weights: list  # after the last step; norm parameters are the inputs unchanged


class MetaLearner:
    """Owns a model, its two Adam optimisers and the compiled steps that train it.

    `meta_step`, `pretrain_step` and `evaluate` take batches shaped [tasks, examples, ...]
    (support a, query b) and are `tf.function`s traced once per batch shape. `batched=False`
    selects the per-task reference implementation (same results, slower).
    """

    def __init__(self, model, loss_fn, *, update_lr, num_updates, stop_grad=False, meta_lr=1e-3,
                 clip_value=None, classification=False, batched=True):
        if num_updates < 1:
            raise ValueError(f"num_updates must be at least 1 (MAML adapts before its meta-loss), got {num_updates}")
        self.model = model
        self.loss_fn = loss_fn
        self.update_lr = update_lr
        self.num_updates = num_updates
        self.stop_grad = stop_grad
        self.clip_value = clip_value
        self.classification = classification
        self.batched = batched
        # Built now so that an unsupported model fails at construction, not inside a trace.
        self._batched_forward = batched_forward(model) if batched else None
        self.variables = list(model.trainable_variables)
        self._adaptable = [i for i, v in enumerate(self.variables) if not is_norm_variable(model, v)]
        # Two optimisers, as the original built separate Adam ops for pretraining and meta-training.
        self.meta_optimizer = keras.optimizers.Adam(meta_lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.pretrain_optimizer = keras.optimizers.Adam(meta_lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.meta_optimizer.build(self.variables)
        self.pretrain_optimizer.build(self.variables)
        self.meta_step = tf.function(self._meta_step)
        self.train_step = tf.function(self._train_step)
        self.pretrain_step = tf.function(self._pretrain_step)
        self._evaluate_task = tf.function(self._evaluate_one)

    def forward(self, weights, inputs):
        """The model on the given weight values (one per trainable variable)."""
        return self.model.stateless_call(weights, self.model.non_trainable_variables, inputs)[0]

    def adapt(self, weights, inputa, labela, inputb, labelb, num_steps, stop_grad=False, score_every_step=True):
        """`num_steps` SGD steps on one task's support set; the query set is scored after each
        (after the last only, with score_every_step=False)."""
        return self._inner_loop(list(weights), inputa, labela, inputb, labelb, num_steps, stop_grad,
                                self.forward, self.loss_fn, self._accuracy, score_every_step)

    def _inner_loop(self, fast, inputa, labela, inputb, labelb, num_steps, stop_grad, forward, loss_of, accuracy_of,
                    score_every_step):
        """The inner loop, for one task (scalar losses) or a task batch (`loss_of` gives [tasks];
        the gradient of their sum holds each task's own gradient, since task t's loss depends only
        on slice t of the adapted weights)."""
        if num_steps < 1:
            raise ValueError(f"the inner loop needs at least one step, got num_steps={num_steps}")
        query_losses, query_accuracies = [], []
        for step in range(num_steps):
            adaptable = [fast[i] for i in self._adaptable]
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(adaptable)
                outputa = forward(fast, inputa)
                lossa = loss_of(outputa, labela)
                total = tf.reduce_sum(lossa)
            if step == 0:
                support_loss, support_accuracy = lossa, accuracy_of(outputa, labela)
            grads = tape.gradient(total, adaptable)
            if stop_grad:
                grads = [tf.stop_gradient(g) for g in grads]
            for i, w, g in zip(self._adaptable, adaptable, grads):
                fast[i] = w - self.update_lr * g
            if not score_every_step and step < num_steps - 1:
                continue
            outputb = forward(fast, inputb)
            query_losses.append(loss_of(outputb, labelb))
            query_accuracies.append(accuracy_of(outputb, labelb))
        return Adaptation(support_loss, support_accuracy, query_losses, query_accuracies, fast)

    def _accuracy(self, logits, labels):
        if self.classification:
            return accuracy(logits, labels)
        return tf.zeros([], logits.dtype)

    def _adapt_all(self, weights, inputa, labela, inputb, labelb, num_steps, stop_grad, score_every_step=True):
        """Adapt to each task of the batch: (per-task tensors [tasks] and [tasks, steps], the query
        losses after the last step [tasks]).

        score_every_step=False scores the query set after the last step only: the steps axis then
        has length 1. The final query losses are the last step's own tensors, not a slice of the
        stack: through the stack, the outer gradient would carry zeros back through every earlier
        query forward pass (and their second-order terms) at full cost.
        """
        if self.batched:
            return self._adapt_batched(weights, inputa, labela, inputb, labelb, num_steps, stop_grad,
                                       score_every_step)
        results = [
            self.adapt(weights, inputa[t], labela[t], inputb[t], labelb[t], num_steps, stop_grad, score_every_step)
            for t in range(inputa.shape[0])
        ]
        per_task = {
            "support_loss": tf.stack([r.support_loss for r in results]),
            "support_accuracy": tf.stack([r.support_accuracy for r in results]),
            "query_losses": tf.stack([tf.stack(r.query_losses) for r in results]),
            "query_accuracies": tf.stack([tf.stack(r.query_accuracies) for r in results]),
        }
        return per_task, tf.stack([r.query_losses[-1] for r in results])

    def _adapt_batched(self, weights, inputa, labela, inputb, labelb, num_steps, stop_grad, score_every_step=True):
        """`_adapt_all` for all tasks at once: adapted weights carry a leading task axis, the
        first step's being the shared weights broadcast to [tasks, ...]."""
        inputa, labela, inputb, labelb = (tf.convert_to_tensor(t) for t in (inputa, labela, inputb, labelb))
        tasks = inputa.shape[0]
        fast = list(weights)
        for i in self._adaptable:
            fast[i] = tf.broadcast_to(tf.expand_dims(fast[i], 0), [tasks, *fast[i].shape])
        result = self._inner_loop(fast, inputa, labela, inputb, labelb, num_steps, stop_grad, self._batched_forward,
                                  self._task_losses, self._task_accuracies, score_every_step)
        per_task = {
            "support_loss": result.support_loss,
            "support_accuracy": result.support_accuracy,
            "query_losses": tf.stack(result.query_losses, axis=1),
            "query_accuracies": tf.stack(result.query_accuracies, axis=1),
        }
        return per_task, result.query_losses[-1]

    def _task_losses(self, outputs, labels):
        """[tasks]: the per-task loss function vectorised over the leading axis."""
        return tf.vectorized_map(lambda pair: self.loss_fn(*pair), (outputs, labels))

    def _task_accuracies(self, outputs, labels):
        return tf.vectorized_map(lambda pair: self._accuracy(*pair), (outputs, labels))

    def meta_gradients(self, inputa, labela, inputb, labelb, score_every_step=True):
        """(per-task metrics, gradient of the meta-loss for each trainable variable).

        Meta-loss: query loss after exactly `num_updates` inner steps, mean over tasks.
        """
        with tf.GradientTape() as tape:
            weights = [tf.convert_to_tensor(v) for v in self.variables]
            per_task, final_query_losses = self._adapt_all(weights, inputa, labela, inputb, labelb, self.num_updates,
                                                           self.stop_grad, score_every_step)
            meta_loss = tf.reduce_mean(final_query_losses)
        return per_task, tape.gradient(meta_loss, self.variables)

    def _meta_step(self, inputa, labela, inputb, labelb):
        """One meta-update: Adam (optionally after an element-wise clip) on the meta-gradient."""
        per_task = self._apply_meta_update(inputa, labela, inputb, labelb, score_every_step=True)
        return _task_means(per_task)

    def _train_step(self, inputa, labela, inputb, labelb):
        """`meta_step`'s update, without scoring the query set after the intermediate inner steps.

        Those scores only feed logs (the original's training op never computed them; only its
        summary fetches did), yet with 5 inner steps and 75 query images (MiniImagenet) they
        cost about as much as the rest. Returns the mean pre-update support loss/accuracy and
        the mean query loss/accuracy after the last step.
        """
        per_task = self._apply_meta_update(inputa, labela, inputb, labelb, score_every_step=False)
        return {"pre_loss": tf.reduce_mean(per_task["support_loss"]),
                "pre_accuracy": tf.reduce_mean(per_task["support_accuracy"]),
                "post_loss": tf.reduce_mean(per_task["query_losses"][:, -1]),
                "post_accuracy": tf.reduce_mean(per_task["query_accuracies"][:, -1])}

    def _apply_meta_update(self, inputa, labela, inputb, labelb, score_every_step):
        per_task, grads = self.meta_gradients(inputa, labela, inputb, labelb, score_every_step)
        if self.clip_value is not None:
            grads = [tf.clip_by_value(g, -self.clip_value, self.clip_value) for g in grads]
        self.meta_optimizer.apply_gradients(zip(grads, self.variables))
        return per_task

    def pretrain_gradients(self, inputa, labela):
        """(loss, gradients) of the pretrained baseline's loss: the support loss, mean over tasks."""
        with tf.GradientTape() as tape:
            weights = [tf.convert_to_tensor(v) for v in self.variables]
            losses = [self.loss_fn(self.forward(weights, inputa[t]), labela[t]) for t in range(inputa.shape[0])]
            loss = tf.reduce_mean(tf.stack(losses))
        return loss, tape.gradient(loss, self.variables)

    def _pretrain_step(self, inputa, labela):
        """The pretrained baseline: Adam on the support loss of each task, no adaptation."""
        loss, grads = self.pretrain_gradients(inputa, labela)
        if self.clip_value is not None:
            grads = [tf.clip_by_value(g, -self.clip_value, self.clip_value) for g in grads]
        self.pretrain_optimizer.apply_gradients(zip(grads, self.variables))
        return loss

    def evaluate(self, inputa, labela, inputb, labelb, num_steps):
        """Per-task adaptation metrics as numpy arrays, weights untouched (num_steps: Python int).

        Batched: the whole batch in one call (its graph's size does not grow with the tasks).
        Reference: one task per call of a single-task graph, so that tracing stays small however
        many tasks and steps are scored (logging, validation and the 600-task test share it).
        """
        if self.batched:
            return {key: value.numpy() for key, value in self._evaluate_task(inputa, labela, inputb, labelb,
                                                                             num_steps).items()}
        results = [self._evaluate_task(inputa[t:t + 1], labela[t:t + 1], inputb[t:t + 1], labelb[t:t + 1], num_steps)
                   for t in range(len(inputa))]
        return {key: np.concatenate([r[key].numpy() for r in results]) for key in results[0]}

    def _evaluate_one(self, inputa, labela, inputb, labelb, num_steps):
        weights = [tf.convert_to_tensor(v) for v in self.variables]
        return self._adapt_all(weights, inputa, labela, inputb, labelb, num_steps, stop_grad=True)[0]


def _task_means(per_task):
    return {
        "pre_loss": tf.reduce_mean(per_task["support_loss"]),
        "pre_accuracy": tf.reduce_mean(per_task["support_accuracy"]),
        "post_losses": tf.reduce_mean(per_task["query_losses"], axis=0),
        "post_accuracies": tf.reduce_mean(per_task["query_accuracies"], axis=0),
    }
