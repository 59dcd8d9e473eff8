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

from rl import advantages as adv_lib
from rl import objectives as obj
from rl import policy as pol
from rl.sampler import rollout


def paper_test_goals(num_tasks=40, seed=1):
    """np.random.seed(seed); np.random.uniform(-0.5, 0.5, (num_tasks, 2)), as the original."""
    return np.random.RandomState(seed).uniform(-0.5, 0.5, size=(num_tasks, 2))


def step_sizes(fast_lr, num_steps, later_scale=0.5, first_scale=1.0):
    """alpha (first_scale * alpha) for the first adaptation step, later_scale * alpha (alpha/2)
    for the later ones."""
    return [fast_lr * first_scale if step == 0 else fast_lr * later_scale for step in range(num_steps)]


def compile_steps(activation="relu"):
    """The (forward, update) tf.functions `adapt_and_evaluate` uses; pass them back in
    (`compiled=`) to reuse their traces over many calls of the same shapes."""
    forward = tf.function(lambda p, o: pol.forward(p, o, activation), reduce_retracing=True)
    update = tf.function(lambda p, d, lr: obj.inner_update(p, d, lr, activation), reduce_retracing=True)
    return forward, update


def adapt_and_evaluate(param_values, tasks, vec_env, *, num_trajs, horizon, fast_lr, num_steps,
                       rng, activation="relu", discount=0.99, gae_lambda=1.0, dtype=tf.float32,
                       batch_in_steps=True, later_lr_scale=0.5, collector_workers=1, record=None,
                       first_lr_scale=1.0, compiled=None):
    """Returns [num_tasks, num_steps + 1]: each task's mean return after 0..num_steps steps.

    batch_in_steps=True samples whole paths until num_trajs * horizon steps per
    task (the original's batch_size=4000), else exactly num_trajs paths;
    collector_workers emulates rllab's parallel collector (see rl.sampler).
    record: optional list, read-only hook (equivalence tests); gets one dict per sampled batch:
    the batch, the task-batched parameters that sampled it (numpy), and the step size of the
    update that follows it (None after the last).
    first_lr_scale: the first step is first_lr_scale * fast_lr (default 1: alpha).
    compiled: optional `compile_steps(activation)` pair to reuse.
    """
    n_tasks = len(tasks)
    params = [tf.constant(np.broadcast_to(v, (n_tasks,) + np.shape(v)), dtype=dtype) for v in param_values]
    forward, update = compile_steps(activation) if compiled is None else compiled

    def act_fn(obs):
        mean, log_std = forward(params, tf.constant(obs.reshape(n_tasks, num_trajs, -1), dtype))
        return mean.numpy().reshape(len(obs), -1), log_std.numpy().reshape(len(obs), -1)

    results = []
    lrs = step_sizes(fast_lr, num_steps, later_lr_scale, first_lr_scale)
    for step in range(num_steps + 1):
        batch = rollout(vec_env, tasks, num_trajs, horizon, act_fn, rng,
                        num_trajs * horizon if batch_in_steps else None,
                        collector_workers=collector_workers)
        results.append(batch.mean_return_per_task())
        if record is not None:
            record.append({"batch": batch, "params": [p.numpy() for p in params],
                           "step_size": lrs[step] if step < num_steps else None})
        if step == num_steps:
            break
        advantages = adv_lib.process_batch(batch, discount, gae_lambda)
        data = {k: tf.constant(v, dtype) for k, v in batch.compact(advantages).items()}
        params = update(params, data, tf.constant(lrs[step], dtype))
    return np.stack(results, axis=1)
