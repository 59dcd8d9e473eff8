"""The MAML-RL losses, written on parameter lists so they can be nested.

Loss inputs ("data") are dicts of tensors with leading axes [task, step] (`loss_inputs`:
`rl.sampler.Batch.compact` with the advantages): every task's valid steps packed to the front,
'mask' 0 on the padding. Parameter lists are in `rl.policy.Policy.params` order, either shared
([...]) or task-batched ([T, ...]); `forward` is a policy's `Policy.forward`.
"""
import tensorflow as tf

from rl import advantages as adv_lib
from rl import policy as pol
from report.determinism import keep_sums_in_order

keep_sums_in_order()  # the same bits on every call (report/determinism.py)


def loss_inputs(batch, discount, gae_lambda, dtype, pool_tasks=False, pad_steps_to=1):
    """The loss inputs of a sampled `rl.sampler.Batch`: its advantages (`rl.advantages.process_batch`:
    per task, or over all tasks' paths pooled) and its packed steps, as `dtype` tensors (the step
    axis padded, masked, to a multiple of `pad_steps_to`)."""
    advantages = adv_lib.process_batch(batch, discount, gae_lambda, pool_tasks=pool_tasks)
    packed = batch.compact(advantages, pad_steps_to, tf.as_dtype(dtype).as_numpy_dtype)
    return {k: tf.constant(v) for k, v in packed.items()}


def _masked_mean(x, mask, axis=None):
    return tf.reduce_sum(x * mask, axis=axis) / tf.reduce_sum(mask, axis=axis)


def reinforce_losses(forward, params, data):
    """Per-task inner loss -mean_t log pi(a_t|s_t) A_t over the task's timesteps, [T]."""
    mean, log_std = forward(params, data["observations"])
    logli = pol.log_prob(data["actions"], mean, log_std)
    return -_masked_mean(logli * data["advantages"], data["mask"], axis=1)


def inner_step(forward, params, support, lr):
    """The inner (adaptation) step, one per task i on its support batch D_i (Finn et al. 2017,
    Section 2.2 / Algorithm 3 line 6, with the RL loss of eq. 4 as a REINFORCE estimate):

        theta'_i = theta - alpha * grad_theta L_{T_i}(f_theta),
        L_{T_i}(f_theta) = -mean_t log pi_theta(a_t|s_t) A_t   over D_i.

    All parameters are adapted, log-std included. `params` may be shared (then broadcast to one
    copy per task) or task-batched. Differentiable w.r.t. `params` when an outer tape records
    (the meta-gradient is then second order)."""
    n_tasks = tf.shape(support["mask"])[0]
    if params[-1].shape.rank != 2:  # shared: one copy per task
        params = [tf.broadcast_to(p, tf.concat([[n_tasks], tf.shape(p)], 0)) for p in params]
    with tf.GradientTape() as tape:
        tape.watch(params)
        # Task t's loss only depends on copy t, so one gradient gives all per-task gradients.
        total = tf.reduce_sum(reinforce_losses(forward, params, support))
    grads = tape.gradient(total, params)
    return [p - lr * g for p, g in zip(params, grads)]


def surrogate_and_kl(forward, params, data, per_task=True):
    """TRPO's surrogate loss and mean KL of the policy with `params` on data sampled by the
    old policy pi_old (whose means and log-stds the data hold):

        L = -E[pi(a|s) / pi_old(a|s) A],   KL = E[KL(pi_old(.|s) || pi(.|s))].

    per_task=True (MAML): L = unweighted mean over tasks of each task's mean; KL = mean over
    all timesteps of all tasks (the original concatenates them).
    per_task=False (plain TRPO): both are means over all timesteps.
    """
    mean, log_std = forward(params, data["observations"])
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


def surrogate_and_kl_shares(forward, params, data, num_tasks, num_steps):
    """This slice's shares of the per_task=True `surrogate_and_kl` of a batch split by task
    (rl.distributed): with the batch's T = `num_tasks` tasks and N = `num_steps` valid query
    steps (all slices),

        L_share = sum_{i in slice} L_i / T,   KL_share = sum_{(i, t) in slice} KL_{i,t} / N,

    where L_i is task i's mean surrogate -E_i[pi(a|s) / pi_old(a|s) A]. The slices' shares add
    up to the batch's L (a mean over tasks) and KL (a mean over all query steps, not over
    tasks), and so do their gradients."""
    mean, log_std = forward(params, data["observations"])
    logli = pol.log_prob(data["actions"], mean, log_std)
    old_logli = pol.log_prob(data["actions"], data["means"], data["log_stds"])
    ratio = tf.exp(logli - old_logli)
    mask = data["mask"]
    loss = tf.reduce_sum(-_masked_mean(ratio * data["advantages"], mask, axis=1)) / num_tasks
    kl = tf.reduce_sum(pol.kl(data["means"], data["log_stds"], mean, log_std) * mask) / num_steps
    return loss, kl
