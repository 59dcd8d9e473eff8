"""The MAML-RL losses, written on parameter lists so they can be nested.

Data are dicts of tensors with leading axes [task, step] (`Batch.flat()` plus
'advantages'); padded steps have mask 0. Parameter lists follow
`rl.policy.policy_params`, either shared ([...]) or task-batched ([T, ...]).
"""
import tensorflow as tf

from rl import policy as pol


def _masked_mean(x, mask, axis=None):
    return tf.reduce_sum(x * mask, axis=axis) / tf.reduce_sum(mask, axis=axis)


def reinforce_losses(params, data, activation):
    """Per-task inner loss -mean_t log pi(a|s) A over the task's timesteps, [T]."""
    mean, log_std = pol.forward(params, data["observations"], activation)
    logli = pol.log_prob(data["actions"], mean, log_std)
    return -_masked_mean(logli * data["advantages"], data["mask"], axis=1)


def inner_update(params, data, lr, activation):
    """One SGD step per task on its REINFORCE loss, all parameters (log-std
    included). `params` may be shared (then broadcast to one copy per task) or
    task-batched. Differentiable w.r.t. `params` when an outer tape records."""
    n_tasks = tf.shape(data["mask"])[0]
    batched = params[-1].shape.rank == 2
    if not batched:
        params = [tf.broadcast_to(p, tf.concat([[n_tasks], tf.shape(p)], 0)) for p in params]
    with tf.GradientTape() as tape:
        tape.watch(params)
        # Task t's loss only depends on copy t, so one gradient gives all per-task gradients.
        total = tf.reduce_sum(reinforce_losses(params, data, activation))
    grads = tape.gradient(total, params)
    return [p - lr * g for p, g in zip(params, grads)]


def surrogate_and_kl(params, data, activation, per_task=True):
    """TRPO surrogate -E[pi(a|s)/pi_old(a|s) A] and mean KL(old || new).

    per_task=True (MAML): loss = unweighted mean over tasks of each task's mean;
    KL = mean over all timesteps of all tasks (the original concatenates them).
    per_task=False (plain TRPO): both are means over all timesteps.
    """
    mean, log_std = pol.forward(params, data["observations"], activation)
    logli = pol.log_prob(data["actions"], mean, log_std)
    old_logli = pol.log_prob(data["actions"], data["means"], data["log_stds"])
    ratio = tf.exp(logli - old_logli)
    mask = data["mask"]
    if per_task:
        loss = tf.reduce_mean(-_masked_mean(ratio * data["advantages"], mask, axis=1))
    else:
        loss = -_masked_mean(ratio * data["advantages"], mask)
    kl = _masked_mean(pol.kl(data["means"], data["log_stds"], mean, log_std), mask)
    return loss, kl
