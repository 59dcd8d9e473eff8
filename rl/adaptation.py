"""The paper's RL test protocol (maml_examples/test_maml_point.py).

For each test task, starting from the trained policy: sample a batch, record
the mean undiscounted return, take one REINFORCE (vanilla policy gradient) step
-- alpha on the first step, alpha/2 afterwards, as the original's VPG with
init_learning_rate=alpha and learning_rate=alpha/2 -- and repeat. All test
tasks are adapted at once with task-batched parameters; each task only ever
sees its own data.

`first_lr_scale` scales the first step: the FirstOrderOptimizer committed in
cbfinn/maml_rl from 7fe27d7 (25 Feb 2017) to 285393d (13 Apr 2017) ignored
init_learning_rate and stepped at learning_rate (0.5 alpha in every test script
then) every time, i.e. first_lr_scale = later_lr_scale = 0.5.
"""
import numpy as np
import tensorflow as tf

from rl import objectives as obj
from rl.sampler import rollout


def step_sizes(fast_lr, num_steps, later_lr_scale=0.5, first_lr_scale=1.0):
    """alpha (first_lr_scale * alpha) for the first adaptation step, later_lr_scale * alpha
    (alpha/2) for the later ones."""
    return [fast_lr * first_lr_scale if step == 0 else fast_lr * later_lr_scale for step in range(num_steps)]


def compile_inner_step(policy):
    """`rl.objectives.inner_step` of `policy` on task-batched parameters with the step size as an
    argument, compiled: pass it to `adapt_and_evaluate` (`inner_step=`) to reuse its traces over
    many calls of the same shapes."""
    return tf.function(lambda params, support, lr: obj.inner_step(policy.forward, params, support, lr),
                       reduce_retracing=True, autograph=False)


def adapt_and_evaluate(policy, tasks, vec_env, *, num_trajs, horizon, fast_lr, num_steps, rng, discount=0.99,
                       gae_lambda=1.0, batch_in_steps=True, later_lr_scale=0.5, collector_workers=1, record=None,
                       first_lr_scale=1.0, inner_step=None, noise=None, on_pass=None):
    """Returns [num_tasks, num_steps + 1]: each task's mean return after 0..num_steps steps,
    starting every task from `policy`'s parameters (an `rl.policy.Policy`; not changed).

    batch_in_steps=True samples whole paths until num_trajs * horizon steps per
    task (the original's batch_size=4000), else exactly num_trajs paths;
    collector_workers emulates rllab's parallel collector (see rl.sampler).
    record: optional list, read-only hook (equivalence tests); gets one dict per sampled batch:
    the batch, the task-batched parameters that sampled it (numpy), and the step size of the
    update that follows it (None after the last).
    first_lr_scale: the first step is first_lr_scale * fast_lr (default 1: alpha).
    inner_step: optional `compile_inner_step(policy)` to reuse (or `rl.distributed.split_inner_step`).
    noise: optional `rl.sampler.SharedNoise` of `rng`, when `tasks` are a slice of the test tasks
    (`rl.sampler.rollout`).
    on_pass: optional callable, called with no argument after each of the num_steps + 1
    sampling passes (progress).
    """
    n_tasks = len(tasks)
    params = [tf.constant(np.broadcast_to(p.numpy(), (n_tasks,) + tuple(p.shape)), dtype=policy.dtype)
              for p in policy.params]
    inner_step = compile_inner_step(policy) if inner_step is None else inner_step
    results = []
    lrs = step_sizes(fast_lr, num_steps, later_lr_scale, first_lr_scale)
    for step in range(num_steps + 1):
        batch = rollout(vec_env, tasks, num_trajs, horizon, policy.act_fn(params), rng,
                        num_trajs * horizon if batch_in_steps else None,
                        collector_workers=collector_workers, noise=noise)
        results.append(batch.mean_return_per_task())
        if on_pass is not None:
            on_pass()
        if record is not None:
            record.append({"batch": batch, "params": [p.numpy() for p in params],
                           "step_size": lrs[step] if step < num_steps else None})
        if step == num_steps:
            break
        support = obj.loss_inputs(batch, discount, gae_lambda, policy.dtype)
        params = inner_step(params, support, tf.constant(lrs[step], policy.dtype))
    return np.stack(results, axis=1)
