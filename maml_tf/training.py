"""The meta-training loop with the original's logging, summary and checkpoint cadence."""
import math
import time

import numpy as np

from maml_tf.checkpoints import NonFiniteWeightsError
from report.console import format_duration
from report.stop import StopRequested


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or weights at `iteration` (`what` says which)."""

    def __init__(self, iteration, what, pretraining):
        super().__init__(f"{what} at iteration {iteration}")
        self.iteration, self.what, self.pretraining = iteration, what, pretraining


def batch_rng(seed, iteration):
    """The generator for one iteration's tasks: a resumed run sees the same tasks."""
    return np.random.default_rng([seed, iteration])


def summary_names(prefix, num_inner_steps, classification):
    """TensorBoard tags as the original named them."""
    names = {"pre_loss": f"{prefix}Pre-update loss"}
    if classification:
        names["pre_accuracy"] = f"{prefix}Pre-update accuracy"
    for j in range(num_inner_steps):
        names[f"post_loss_{j}"] = f"{prefix}Post-update loss, step {j + 1}"
        if classification:
            names[f"post_accuracy_{j}"] = f"{prefix}Post-update accuracy, step {j + 1}"
    return names


def _batch_means(learner, batch, num_inner_steps):
    """The summary values: means over the batch's tasks of the pre-update (support) and
    post-step (query) metrics, keyed as `summary_names`."""
    scores = learner.evaluate(batch.support, batch.query, num_inner_steps)
    means = type(scores)(*(np.mean(value, axis=0) for value in scores))  # numpy, as the logs always were
    out = {"pre_loss": float(means.support_loss), "pre_accuracy": float(means.support_accuracy)}
    for j, (loss, acc) in enumerate(zip(means.query_losses, means.query_accuracies)):
        out[f"post_loss_{j}"], out[f"post_accuracy_{j}"] = float(loss), float(acc)
    return out


def train(learner, sampler, checkpointer, *, meta_batch_size, pretrain_iterations, metatrain_iterations,
          start_iteration=0, seed=0, eval_num_inner_steps=None, print_interval=100, summary_interval=100,
          save_interval=1000, val_sampler=None, val_interval=500, writer=None, print_fn=print, stop=None):
    """Pretrain for `pretrain_iterations`, then meta-train, from `start_iteration` on.

    Every `summary_interval` iterations the batch about to be trained on is scored with the
    current weights over `eval_num_inner_steps` inner steps (`writer`: a
    report.tensorboard.ScalarWriter; and the printed means, as the original fetched them with
    the update). Checkpoints every `save_interval` and at the end.

    A non-finite training loss or non-finite weights at a checkpoint raise DivergenceError
    (nothing non-finite is saved). With `stop` (a report.stop.GracefulStop), a stop signal
    ends the loop between iterations: the state is saved and StopRequested re-raised, its
    `iteration` attribute set to the iterations completed. `checkpointer` None: nothing is
    saved (the workers of a multi-worker job other than the chief).
    """
    total = pretrain_iterations + metatrain_iterations
    eval_steps = max(learner.num_inner_steps, eval_num_inner_steps or learner.num_inner_steps)
    key = "accuracy" if learner.classification else "loss"
    train_names = summary_names("metatrain_", eval_steps, learner.classification)
    val_names = summary_names("metaval_", eval_steps, learner.classification)
    pre, post = [], []
    clock, clock_itr = None, None  # the rate is timed from the end of the first iteration (after tracing)
    if start_iteration >= total:
        print_fn(f"Nothing to do: the run is at iteration {start_iteration} of {total}.")
    for itr in range(start_iteration, total):
        if stop is not None:
            try:
                stop.check()
            except StopRequested as stopped:
                if itr > start_iteration and itr % save_interval != 0:  # (else just saved: a second write of
                    _save(checkpointer, itr - 1, pretrain_iterations)  # it failing would remove the first)
                stopped.iteration = itr
                raise
        batch = sampler.sample(batch_rng(seed, itr), meta_batch_size)
        if itr % summary_interval == 0:
            means = _batch_means(learner, batch, eval_steps)
            pre.append(means[f"pre_{key}"])
            post.append(means[f"{'post_' + key}_{learner.num_inner_steps - 1}"])
            _write(writer, train_names, means, itr)
        if itr < pretrain_iterations:
            loss = learner.pretrain_step(batch.support)
        else:
            loss = learner.train_step(batch.support, batch.query).query_losses[-1]  # the logged metrics: _batch_means
        if not math.isfinite(float(loss)):
            raise DivergenceError(itr, f"the training loss is {float(loss)}", itr < pretrain_iterations)
        if clock is None:
            clock, clock_itr = time.perf_counter(), itr

        if itr != 0 and itr % print_interval == 0 and pre:
            now = time.perf_counter()
            speed = ""
            if itr > clock_itr:
                rate = (itr - clock_itr) / max(now - clock, 1e-9)
                speed = f"  ({rate:.1f} it/s, ETA {format_duration((total - itr - 1) / rate)})"
            label = f"Pretrain Iteration {itr}" if itr < pretrain_iterations else f"Iteration {itr - pretrain_iterations}"
            print_fn(f"{label}: {np.mean(pre):.6g}, {np.mean(post):.6g}{speed}")
            pre, post = [], []
            clock, clock_itr = now, itr
        if val_sampler is not None and itr != 0 and itr % val_interval == 0:
            val = _batch_means(learner, val_sampler.sample(batch_rng(seed + 1, itr), meta_batch_size), eval_steps)
            _write(writer, val_names, val, itr)
            print_fn(f"Validation results: {val[f'pre_{key}']:.6g}, {val[f'post_{key}_{learner.num_inner_steps - 1}']:.6g}")
        if (itr + 1) % save_interval == 0 and itr + 1 < total:
            _save(checkpointer, itr, pretrain_iterations)
    if total > start_iteration:
        _save(checkpointer, total - 1, pretrain_iterations)
    if writer is not None:
        writer.flush()


def _save(checkpointer, itr, pretrain_iterations):
    """The checkpoint after iteration `itr`; non-finite weights are a DivergenceError."""
    if checkpointer is None:
        return
    try:
        checkpointer.save(itr + 1)
    except NonFiniteWeightsError:
        raise DivergenceError(itr, "the weights are not finite", itr < pretrain_iterations) from None


def _write(writer, names, values, step):
    if writer is not None:
        writer.scalars(step, {tag: values[key] for key, tag in names.items()})

