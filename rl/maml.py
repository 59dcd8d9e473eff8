"""MAML-TRPO (maml_rl `MAMLTRPO` / `BatchMAMLPolopt`), plus the two non-meta
trainers the paper compares with: the pretrained policy (`use_maml=False`) and
the oracle (plain TRPO on the oracle env).

One `MetaLearner.iteration` = sample tasks, sample with theta, one inner
REINFORCE step per task, sample with each theta', one outer update:
  maml     TRPO on the post-update surrogate, differentiating through the
           inner step (second order);
  pretrain one Adam step (lr 1e-3) on the mean over tasks of the *pre-update*
           REINFORCE loss -- what the original's FirstOrderOptimizer(max_epochs=1,
           batch_size=None) does with use_maml=False;
  oracle   TRPO on the pre-update data, paths of all tasks pooled into one
           batch, each path with a freshly drawn goal (rllab's TRPO on
           PointEnvRandGoalOracle; the observation contains the goal).
"""
import time

import keras
import numpy as np
import tensorflow as tf

from rl import advantages as adv_lib
from rl import objectives as obj
from rl import policy as pol
from rl.sampler import rollout
from rl.trpo import ConjugateGradientOptimizer

MODES = ("maml", "pretrain", "oracle")


class FlatTarget:
    """get/set all policy variables as one numpy vector (rllab `Parameterized`)."""

    def __init__(self, variables):
        self.variables = list(variables)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.dtype = self.variables[0].dtype.as_numpy_dtype

    def get_flat(self):
        return np.concatenate([v.numpy().ravel() for v in self.variables])

    def set_flat(self, flat):
        for v, value in zip(self.variables, pol.unflatten(tf.constant(flat, dtype=self.dtype), self.shapes)):
            v.assign(value)


def to_tensors(batch, advantages, dtype):
    return {k: tf.constant(v, dtype=dtype) for k, v in batch.compact(advantages).items()}


class MetaLearner:
    def __init__(self, model, vec_env, *, mode="maml", fast_lr=0.1, meta_batch_size=40,
                 fast_batch_size=20, max_path_length=100, discount=0.99, gae_lambda=1.0,
                 max_kl=0.01, cg_iters=10, cg_damping=1e-5, hvp_base_eps=1.0,
                 pretrain_lr=1e-3, activation="relu", batch_in_steps=False, collector_workers=1):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if vec_env.num_envs != meta_batch_size * fast_batch_size:
            raise ValueError("vec_env must have meta_batch_size * fast_batch_size envs")
        self.model, self.vec_env, self.mode = model, vec_env, mode
        self.fast_lr, self.meta_batch_size, self.fast_batch_size = fast_lr, meta_batch_size, fast_batch_size
        self.max_path_length, self.discount, self.gae_lambda = max_path_length, discount, gae_lambda
        self.activation = activation
        # rllab counts the batch in steps: fast_batch_size * max_path_length per task.
        self.steps_per_task = fast_batch_size * max_path_length if batch_in_steps else None
        # rllab's parallel collector (n_parallel workers) also keeps the paths running at the budget.
        self.collector_workers = collector_workers
        self.params = pol.policy_params(model)
        self.dtype = self.params[0].dtype
        self.target = FlatTarget(self.params)
        self.trpo = ConjugateGradientOptimizer(max_kl, cg_iters, cg_damping, hvp_base_eps=hvp_base_eps)
        # TF1's AdamOptimizer defaults (epsilon 1e-8), as in the original.
        self.optimizer = keras.optimizers.Adam(pretrain_lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self._build_functions()

    # ---- compiled pieces -------------------------------------------------
    def _build_functions(self):
        act = self.activation
        per_task = self.mode != "oracle"

        def outer(pre, post):
            if self.mode == "oracle":
                return obj.surrogate_and_kl(self.params, pre, act, per_task=False)
            fast = obj.inner_update(self.params, pre, self.fast_lr, act)
            return obj.surrogate_and_kl(fast, post, act, per_task=per_task)

        def grad_of(index):
            def fn(pre, post):
                with tf.GradientTape() as tape:
                    value = outer(pre, post)[index]
                grads = tape.gradient(value, self.params)
                grads = [tf.zeros_like(p) if g is None else g for p, g in zip(self.params, grads)]
                return value, pol.flatten(grads)
            return fn

        def pretrain_step(pre):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(obj.reinforce_losses(self.params, pre, act))
            grads = tape.gradient(loss, self.params)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            return loss

        self._loss_kl = tf.function(outer, reduce_retracing=True)
        self._loss_grad = tf.function(grad_of(0), reduce_retracing=True)
        self._kl_grad = tf.function(grad_of(1), reduce_retracing=True)
        self._pretrain_loss = tf.function(
            lambda pre: tf.reduce_mean(obj.reinforce_losses(self.params, pre, act)), reduce_retracing=True)
        self._pretrain_step = tf.function(pretrain_step, reduce_retracing=True)
        self._adapt = tf.function(lambda pre: obj.inner_update(self.params, pre, self.fast_lr, act),
                                  reduce_retracing=True)
        self._act = tf.function(lambda obs: pol.forward(self.params, obs, act), reduce_retracing=True)
        self._act_batched = tf.function(lambda params, obs: pol.forward(params, obs, act),
                                        reduce_retracing=True)

    def act_fn(self, fast_params=None):
        """Sampler callback: obs [E, d] -> (mean, log_std) numpy, E = tasks x trajs."""
        t, n = self.meta_batch_size, self.fast_batch_size

        def shared(obs):
            mean, log_std = self._act(tf.constant(obs, self.dtype))
            return mean.numpy(), log_std.numpy()

        def per_task(obs):
            mean, log_std = self._act_batched(fast_params, tf.constant(obs.reshape(t, n, -1), self.dtype))
            return mean.numpy().reshape(t * n, -1), log_std.numpy().reshape(t * n, -1)

        return shared if fast_params is None else per_task

    def _sample(self, tasks, rng, fast_params=None):
        # The oracle env of the original draws a new goal at every reset.
        new_task = (lambda r: self.vec_env.sample_tasks(1, r)[0]) if self.mode == "oracle" else None
        batch = rollout(self.vec_env, tasks, self.fast_batch_size, self.max_path_length,
                        self.act_fn(fast_params), rng, self.steps_per_task, new_task,
                        collector_workers=self.collector_workers)
        advantages = adv_lib.process_batch(batch, self.discount, self.gae_lambda,
                                           pool_tasks=self.mode == "oracle")
        return batch, to_tensors(batch, advantages, self.dtype)

    # ---- one iteration ---------------------------------------------------
    def iteration(self, rng):
        """Run one meta-iteration; returns a dict of rllab-named statistics."""
        start = time.time()
        tasks = self.vec_env.sample_tasks(self.meta_batch_size, rng)
        pre_batch, pre = self._sample(tasks, rng)
        stats = _return_stats(pre_batch, "0")
        stats["AveragePolicyStd"] = float(np.exp(self.params[-1].numpy()).mean())
        env_steps = pre_batch.num_steps
        if self.mode == "pretrain":
            stats["LossBefore"] = float(self._pretrain_loss(pre))
            self._pretrain_step(pre)
            stats["LossAfter"] = float(self._pretrain_loss(pre))
        elif self.mode == "oracle":
            stats.update(self._trpo_step(pre, pre))
        else:
            fast = self._adapt(pre)
            post_batch, post = self._sample(tasks, rng, fast_params=fast)
            env_steps += post_batch.num_steps
            stats.update(_return_stats(post_batch, "1"))
            stats.update(self._trpo_step(pre, post))
            # Read-only record of this iteration's inputs and inner step (equivalence tests).
            self.last_iteration = {"tasks": tasks, "pre_batch": pre_batch, "post_batch": post_batch,
                                   "fast_params": fast}
        stats["dLoss"] = stats["LossBefore"] - stats["LossAfter"]
        stats["EnvSteps"] = env_steps
        stats["ItrTime"] = time.time() - start
        return stats

    def _trpo_step(self, pre, post):
        _, kl_before = self._loss_kl(pre, post)
        info = self.trpo.step(
            self.target,
            loss_grad_fn=lambda: _np(self._loss_grad(pre, post)),
            kl_grad_fn=lambda: self._kl_grad(pre, post)[1].numpy(),
            loss_kl_fn=lambda: _np(self._loss_kl(pre, post)))
        self.last_trpo_step = info  # read-only record (gradient, CG direction, step size)
        return {"MeanKLBefore": float(kl_before), "MeanKL": info.kl_after,
                "LossBefore": info.loss_before, "LossAfter": info.loss_after,
                "StepAccepted": float(info.accepted), "Backtracks": info.backtracks}


def _np(values):
    return tuple(v.numpy() for v in values)


def _return_stats(batch, prefix):
    returns = batch.undiscounted_returns()
    return {prefix + "AverageReturn": float(returns.mean()), prefix + "StdReturn": float(returns.std()),
            prefix + "MaxReturn": float(returns.max()), prefix + "MinReturn": float(returns.min()),
            prefix + "NumTrajs": int(returns.size)}
