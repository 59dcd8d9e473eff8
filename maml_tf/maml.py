"""MAML (Finn et al. 2017, Algorithm 2) as pure functions of weights and data.

Weights are lists of tensors ordered as the model's trainable variables. `forward(weights, x)`
runs the network; `loss(outputs, labels)` and `accuracy(outputs, labels)` score one task, or,
on the batched path, every task of a meta-batch at once ([tasks] results, each adapted weight
carrying a leading task axis). `adaptable` holds the indices of the weights the inner loop
updates: every kernel and bias; the normalisation offsets and scales are left to the outer
step, as the original kept them outside its `weights` dict.

A support set and a query set are each a pair (inputs, labels).
"""
from typing import NamedTuple

import tensorflow as tf

from report.determinism import keep_sums_in_order

keep_sums_in_order()  # the same bits on every call (report/determinism.py)


class Scores(NamedTuple):
    """What adaptation measured: per task ([tasks] and [tasks, steps]), or their means over
    tasks (scalars and [steps]). The query entries follow inner steps 1..n, or only the last
    step when the intermediate ones were not scored."""

    support_loss: tf.Tensor  # before the first inner step
    support_accuracy: tf.Tensor  # (zero for regression)
    query_losses: tf.Tensor
    query_accuracies: tf.Tensor

    def mean(self):
        """The means over tasks (the leading axis) of every entry."""
        return Scores(*(tf.reduce_mean(value, axis=0) for value in self))


def inner_loop(forward, loss, weights, support, lr, steps, first_order=False, adaptable=None, low_rank=()):
    """`steps` gradient steps on the support loss, the paper's inner update (Section 2.2,
    Algorithm 2 line 7) repeated:

        theta'  <-  theta' - lr * grad_theta' L_support(f_theta'),   theta' starting at theta.

    Only the weights listed in `adaptable` (default: all) move. The gradients stay in the graph,
    so that an outer gradient flows through them (second order); `first_order` stops them
    (the original's --stop_grad). With a [tasks] loss the gradient of its sum holds each task's
    own gradient, since task t's loss depends only on slice t of the adapted weights.

    `low_rank` lists dense kernels (among `adaptable`) given as `batched_forward.LowRankKernel`s,
    on the batched path. For a dense layer y = x W + b on the support inputs x_s,
    grad_W L = x_s^T dL/dy_s, so the step is kept as the factor pair (x_s, -lr dL/dy_s): the
    same update, of rank the support size (+ 1, `LowRankKernel.plus`), without a
    [tasks, in, out] kernel per task. dL/dy_s is the gradient with respect to a zero tap on the
    layer's output (`forward(.., taps)`).

    A convolution kernel may come as a `batched_forward.SharedKernel` (the shared kernel plus a
    zero per-task delta, before the first step): the tape then watches the delta, whose gradient
    is each task's own kernel gradient, and the step leaves a per-task kernel.

    Returns (the support outputs before the first step, [the weights after step 1, ..., steps]).
    """
    if steps < 1:
        raise ValueError(f"the inner loop needs at least one step, got steps={steps}")
    inputs, labels = support
    adaptable = range(len(weights)) if adaptable is None else adaptable
    factored = [i for i in adaptable if i in low_rank]
    plain = [i for i in adaptable if i not in low_rank]
    fast, trajectory, first_outputs = list(weights), [], None
    for _ in range(steps):
        moving = [_watched_tensor(fast[i]) for i in plain]
        taps = {i: tf.zeros([*inputs.shape[:2], fast[i].base.shape[-1]], fast[i].base.dtype) for i in factored}
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(moving + list(taps.values()))
            if taps:
                outputs, layer_inputs = forward(fast, inputs, taps)
            else:
                outputs = forward(fast, inputs)
            total = tf.reduce_sum(loss(outputs, labels))
        first_outputs = outputs if first_outputs is None else first_outputs
        gradients = tape.gradient(total, moving + list(taps.values()))
        factors = [(layer_inputs[i], -lr * g) for i, g in zip(factored, gradients[len(plain):])]
        gradients = gradients[:len(plain)]
        if first_order:
            gradients = [tf.stop_gradient(g) for g in gradients]
            factors = [(tf.stop_gradient(x), tf.stop_gradient(d)) for x, d in factors]
        fast = list(fast)
        for i, g in zip(plain, gradients):
            fast[i] = _materialised(fast[i]) - lr * g
        for i, (x, d) in zip(factored, factors):
            fast[i] = fast[i].plus(x, d)
        trajectory.append(fast)
    return first_outputs, trajectory


def _watched_tensor(weight):
    """The tensor whose gradient is a weight's per-task gradient: a `SharedKernel`'s zero delta
    (recognised by its `per_task` method: this module does not depend on the batched forward)."""
    return weight.delta if hasattr(weight, "per_task") else weight


def _materialised(weight):
    """A weight as one tensor with its task axis: a `SharedKernel`'s kernel + delta, anything
    else itself."""
    return weight.per_task() if hasattr(weight, "per_task") else weight


def adapt_and_score(forward, loss, accuracy, weights, support, query, lr, steps, first_order=False, adaptable=None,
                    score_every_step=True, low_rank=()):
    """Adapt to the support set (`inner_loop`), then score the query set with the adapted
    weights after every step, or after the last one only (`score_every_step=False`: the
    intermediate scores feed nothing but logs, and with 5 steps they cost about as much as the
    rest).

    `low_rank`: dense kernels whose steps stay factored (`inner_loop`).

    Returns (Scores, the query loss after the last step). The latter is that step's own tensor,
    not a slice of the stacked scores: through the stack, an outer gradient would carry zeros
    back through every earlier query pass (and their second-order terms) at full cost.
    """
    support_outputs, trajectory = inner_loop(forward, loss, weights, support, lr, steps, first_order, adaptable, low_rank)
    scored = [_query_scores(forward, loss, accuracy, w, query)
              for w in (trajectory if score_every_step else trajectory[-1:])]
    query_losses = [query_loss for query_loss, _ in scored]
    scores = Scores(loss(support_outputs, support[1]), accuracy(support_outputs, support[1]),
                    tf.stack(query_losses, axis=-1), tf.stack([a for _, a in scored], axis=-1))
    return scores, query_losses[-1]


def _query_scores(forward, loss, accuracy, weights, query):
    """(loss, accuracy) of the query set under adapted weights."""
    inputs, labels = query
    outputs = forward(weights, inputs)
    return loss(outputs, labels), accuracy(outputs, labels)


def score_adaptation(forward, loss, accuracy, weights, support, query, lr, steps, first_order=False, adaptable=None):
    """Scores as `adapt_and_score` gives them with every step scored, for evaluation, where no
    gradient flows back: step 1 as in `inner_loop` (its kernels may enter shared), steps 2..n
    as the body of one `tf.while_loop`, each followed by its query pass. The graph then holds
    two inner steps however many are taken: for the test's 10 steps on Omniglot 5-way 1-shot,
    2.4k ops instead of 11.9k, built 3-5x sooner (benchmarks/trace_time.py). Each iteration runs the ops
    of an unrolled step, to round-off (graph optimisation sees the loop body on its own).

    Every adapted weight must be a tensor after the first step (a `LowRankKernel`'s rank grows
    with each step: use `adapt_and_score` for those).
    """
    adaptable = list(range(len(weights)) if adaptable is None else adaptable)
    support_outputs, (fast,) = inner_loop(forward, loss, weights, support, lr, 1, first_order, adaptable)

    def scored(adapted):
        return _query_scores(forward, loss, accuracy, adapted, query)

    def step(i, losses, accuracies, *moving):
        adapted = list(fast)
        for index, value in zip(adaptable, moving):
            adapted[index] = value
        _, (adapted,) = inner_loop(forward, loss, adapted, support, lr, 1, first_order, adaptable)
        step_loss, step_accuracy = scored(adapted)
        return (i + 1, losses.write(i, step_loss), accuracies.write(i, step_accuracy),
                *(adapted[index] for index in adaptable))

    first_loss, first_accuracy = scored(fast)
    losses = tf.TensorArray(first_loss.dtype, size=steps, element_shape=first_loss.shape).write(0, first_loss)
    accuracies = tf.TensorArray(first_accuracy.dtype, size=steps, element_shape=first_accuracy.shape)
    accuracies = accuracies.write(0, first_accuracy)
    _, losses, accuracies, *_ = tf.while_loop(lambda i, *_: i < steps, step,
                                              (tf.constant(1), losses, accuracies, *(fast[i] for i in adaptable)))
    return Scores(loss(support_outputs, support[1]), accuracy(support_outputs, support[1]),
                  _steps_last(losses.stack()), _steps_last(accuracies.stack()))


def _steps_last(stacked):
    """[steps, ...] -> [..., steps], as `adapt_and_score` stacks its per-step scores."""
    return tf.transpose(stacked, [*range(1, len(stacked.shape)), 0])


def outer_loss(final_query_losses):
    """The meta-objective (paper Section 2.2): sum over tasks T of L_T(f_theta'_T) on each task's
    query set, here its mean over the meta-batch, as the original's `total_losses2`. L_T is the
    paper's eq. (2) (mean squared error) or eq. (3) (cross-entropy)."""
    return tf.reduce_mean(final_query_losses)


def meta_gradients(adapt_tasks, variables, support, query, steps, score_every_step=True):
    """(Scores, d outer_loss / d theta for each variable): the gradient of the query losses
    after `steps` inner steps with respect to the weights the inner loop started from,
    differentiated through the inner loop: the gradient in the meta-update of the paper's
    eq. (1), theta <- theta - beta grad_theta sum_T L_T(f_theta'_T) (Algorithm 2, line 10).

    `adapt_tasks(weights, support, query, steps, score_every_step)` adapts every task of the
    batch and returns (per-task Scores, [tasks] final query losses), as `adapt_and_score` does
    for one task or a task batch.
    """
    with tf.GradientTape() as tape:
        weights = [tf.convert_to_tensor(v) for v in variables]
        scores, final_query_losses = adapt_tasks(weights, support, query, steps, score_every_step)
        objective = outer_loss(final_query_losses)
    return scores, tape.gradient(objective, variables)
