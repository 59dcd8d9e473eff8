"""MAML-TRPO (maml_rl `MAMLTRPO` / `BatchMAMLPolopt`), plus the two non-meta trainers the
paper compares with. Each trainer's `iteration(rng)` runs one iteration and returns its
rllab-named statistics (the progress.csv columns):

  MAMLTRPO    sample tasks, sample a support batch with theta, one inner REINFORCE step per
              task (`adapt`), sample a query batch with each theta'_i, and one TRPO step on
              the query surrogate differentiated through the inner step (`surrogate_and_kl`,
              `step`);
  Pretrainer  one Adam step (lr 1e-3) on the mean over tasks of the support batch's
              REINFORCE loss -- what the original's FirstOrderOptimizer(max_epochs=1,
              batch_size=None) does with use_maml=False;
  OracleTRPO  TRPO on the support batch, paths of all tasks pooled into one batch, each path
              with a freshly drawn goal (rllab's TRPO on PointEnvRandGoalOracle; the
              observation contains the goal).

The trainers read their settings from an `rl.config.TrainConfig`.
"""
import time

import keras
import numpy as np
import tensorflow as tf

from report.xla_timing import time_graph_and_xla
from rl import objectives as obj
from rl import policy as pol
from rl.sampler import rollout
from rl.trpo import ConjugateGradientOptimizer


def adam(learning_rate):
    """Adam with TF1's AdamOptimizer defaults (epsilon 1e-8), as in the original."""
    return keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


class Trainer:
    """What the trainers share: the policy, the vectorised env (meta_batch_size *
    fast_batch_size envs), sampling a batch for each task and the iteration's statistics."""

    def __init__(self, policy, vec_env, config):
        if vec_env.num_envs != self.envs_needed(config):
            raise ValueError(f"vec_env must have {self.envs_needed(config)} envs (tasks x fast_batch_size)")
        self.policy, self.vec_env, self.config = policy, vec_env, config
        self.pad_steps_to = 1  # the loss inputs' step axis: see TRPOTrainer

    def envs_needed(self, config):
        """The vec env's size: meta_batch_size * fast_batch_size (all tasks' trajectories at once)."""
        return config.meta_batch_size * config.fast_batch_size

    def sample(self, tasks, rng, params=None, new_task=None, pool_tasks=False, noise=None):
        """fast_batch_size trajectories per task with `params` (None: the policy's variables;
        or task-batched ones), counted in steps like rllab if config.batch_in_steps (`noise`:
        see `rl.sampler.rollout`). Returns the `rl.sampler.Batch` and its loss inputs."""
        c = self.config
        steps_per_task = c.fast_batch_size * c.max_path_length if c.batch_in_steps else None
        batch = rollout(self.vec_env, tasks, c.fast_batch_size, c.max_path_length, self.policy.act_fn(params), rng,
                        steps_per_task, new_task, collector_workers=c.collector_workers, noise=noise)
        return batch, self.loss_inputs(batch, pool_tasks)

    def loss_inputs(self, batch, pool_tasks=False, pad_steps_to=None):
        """A batch's advantages and packed steps (`rl.objectives.loss_inputs`); the step axis
        padded to a multiple of `pad_steps_to` (None: this trainer's `pad_steps_to`)."""
        c = self.config
        return obj.loss_inputs(batch, c.discount, c.gae_lambda, self.policy.dtype, pool_tasks,
                               self.pad_steps_to if pad_steps_to is None else pad_steps_to)

    def sample_support(self, rng):
        """Start of every iteration: the tasks, and their support batch sampled with theta
        (batch, loss inputs) with its statistics ('0...' columns, AveragePolicyStd)."""
        tasks = self.vec_env.sample_tasks(self.config.meta_batch_size, rng)
        batch, support = self.sample(tasks, rng)
        stats = return_stats(batch, "0")
        stats["AveragePolicyStd"] = float(np.exp(self.policy.params[-1].numpy()).mean())
        return tasks, batch, support, stats


class TRPOTrainer(Trainer):
    """A trainer whose update is a TRPO step on its `surrogate_and_kl(*data)`.

    jit_compile: compile the step's three functions (loss and KL, their gradients) with XLA
    (`benchmarks/trpo_step.py` compares the two on the same data); None: `config.jit_compile`
    (rl.train's --jit_compile; unset: graphs). `time_xla_next` True: the next iteration first
    times its KL gradient both ways on its own batches and keeps the faster (`choose_compilation`;
    rl.trainer sets it for a long run with --jit_compile unset)."""

    def __init__(self, policy, vec_env, config, jit_compile=None):
        super().__init__(policy, vec_env, config)
        self.trpo = ConjugateGradientOptimizer(config.max_kl, config.cg_iters, config.cg_damping,
                                               hvp_base_eps=config.hvp_base_eps)
        self.time_xla_next, self.xla_timing = False, None
        self.compile_steps(bool(config.jit_compile if jit_compile is None else jit_compile))

    def compile_steps(self, jit_compile, functions=None):
        """Use the step's three functions (`_step_functions`, or `functions` built by it) as
        graphs, or compiled by XLA (`jit_compile`)."""
        self.jit_compile = jit_compile
        # XLA compiles once per input shape, and where paths end early (point, ant) each batch's
        # step count differs: padded (masked) to a multiple of the horizon, a few shapes recur.
        self.pad_steps_to = self.config.max_path_length if jit_compile else 1
        self.compiled_surrogate_and_kl, self.surrogate_gradient, self.kl_gradient = (
            functions or self._step_functions(jit_compile))

    def _step_functions(self, jit_compile):
        """(loss and KL, (loss, its flat gradient), (KL, its flat gradient)) as tf.functions."""
        return tuple(tf.function(fn, reduce_retracing=True, jit_compile=jit_compile or None, autograph=False)
                     for fn in (self.surrogate_and_kl, lambda *data: self._flat_gradient(0, data),
                                lambda *data: self._flat_gradient(1, data)))

    def choose_compilation(self, data, repack, timer=time_graph_and_xla):
        """Time one KL gradient (the unit the step repeats 22 times, 85-94 % of it) as a graph on
        `data` and compiled by XLA on `repack(pad_steps_to)` (the same batches as XLA runs them,
        padded to the horizon), alternating (`report.xla_timing.time_graph_and_xla`); keep XLA
        if more than 5 % faster, else the graphs. Returns the loss inputs for the kept way;
        the timing is in `xla_timing`. Only the graph steps are replaced, never the weights."""
        self.time_xla_next = False
        padded = repack(self.config.max_path_length)
        xla = self._step_functions(True)  # its KL gradient, once timed, is compiled for this batch
        candidates = {False: (self.kl_gradient, data), True: (xla[2], padded)}
        self.xla_timing = timer(candidates.__getitem__, lambda candidate: candidate[0](*candidate[1])[1])
        if not self.xla_timing.use_xla:
            return data
        self.compile_steps(True, xla)
        return padded

    def surrogate_and_kl(self, *data):
        """(surrogate loss, mean KL) at the policy's parameters, differentiable w.r.t. them."""
        raise NotImplementedError

    def _flat_gradient(self, index, data):
        """(value, flat gradient w.r.t. theta) of surrogate_and_kl(*data)[index]."""
        params = self.policy.params
        with tf.GradientTape() as tape:
            value = self.surrogate_and_kl(*data)[index]
        grads = tape.gradient(value, params)
        return value, pol.flatten([tf.zeros_like(p) if g is None else g for p, g in zip(params, grads)])

    def step(self, *data):
        """One TRPO step of the policy on surrogate_and_kl(*data) (`ConjugateGradientOptimizer.step`);
        returns its statistics. `last_trpo_step` keeps its `StepInfo` (read-only record)."""
        _, kl_before = self.compiled_surrogate_and_kl(*data)
        info = self.trpo.step(
            self.policy,
            loss_grad_fn=lambda: _numpy(self.surrogate_gradient(*data)),
            kl_grad_fn=lambda: self.kl_gradient(*data)[1].numpy(),
            loss_kl_fn=lambda: _numpy(self.compiled_surrogate_and_kl(*data)))
        self.last_trpo_step = info
        return {"MeanKLBefore": float(kl_before), "MeanKL": info.kl_after,
                "LossBefore": info.loss_before, "LossAfter": info.loss_after,
                "StepAccepted": float(info.accepted), "Backtracks": info.backtracks}


class MAMLTRPO(TRPOTrainer):
    """MAML with TRPO as the meta-optimiser (Finn et al. 2017, Algorithm 3; maml_rl's `MAMLTRPO`):
    one inner REINFORCE step per task (`adapt`), one TRPO step on the query surrogate through it
    (`surrogate_and_kl`, `step`).

    `last_iteration` keeps the last iteration's tasks, batches and adapted parameters
    (read-only record for the equivalence tests)."""

    def __init__(self, policy, vec_env, config, jit_compile=None):
        super().__init__(policy, vec_env, config, jit_compile)
        self.compiled_adapt = tf.function(self.adapt, reduce_retracing=True, autograph=False)

    def adapt(self, support):
        """theta'_i = theta - alpha grad_theta L_{T_i}(f_theta) for every task i of the support
        batch (`rl.objectives.inner_step`, alpha = fast_lr); task-batched parameters."""
        return obj.inner_step(self.policy.forward, self.policy.params, support, self.config.fast_lr)

    def surrogate_and_kl(self, support, query):
        """The meta-objective (Section 2.2, sum_i L_{T_i}(f_theta'_i), whose gradient eq. (1)
        and Algorithm 3 line 10 step along), with TRPO's surrogate for the RL loss on each
        task's query batch D'_i (sampled by theta'_i):

            L(theta) = mean_i -E_{D'_i}[pi_{theta'_i}(a|s) / pi_old(a|s) A],
            KL(theta) = mean over all query steps of KL(pi_old || pi_{theta'_i}),

        theta'_i = `adapt(support)`, so gradients flow through the inner step (second order)."""
        return obj.surrogate_and_kl(self.policy.forward, self.adapt(support), query, per_task=True)

    def iteration(self, rng):
        """One meta-iteration: support batch with theta, inner step, query batch with the
        adapted parameters, TRPO step. Returns rllab-named statistics."""
        start = time.time()
        tasks, support_batch, support, stats = self.sample_support(rng)
        adapted = self.compiled_adapt(support)
        query_batch, query = self.sample(tasks, rng, params=adapted)
        stats.update(return_stats(query_batch, "1"))
        if self.time_xla_next:
            support, query = self.choose_compilation(
                (support, query), lambda pad: (self.loss_inputs(support_batch, pad_steps_to=pad),
                                               self.loss_inputs(query_batch, pad_steps_to=pad)))
        stats.update(self.step(support, query))
        self.last_iteration = {"tasks": tasks, "support_batch": support_batch, "query_batch": query_batch,
                               "adapted_params": adapted}
        return finish_stats(stats, start, support_batch, query_batch)


class OracleTRPO(TRPOTrainer):
    """The oracle: plain TRPO on the env whose observation contains the task (rllab's TRPO on
    maml_rl's oracle envs). Every path draws a new task, and advantages are fit over all paths."""

    def sample(self, tasks, rng, params=None):
        """As `Trainer.sample`; the oracle env of the original draws a new goal at every reset."""
        return super().sample(tasks, rng, params, new_task=lambda r: self.vec_env.sample_tasks(1, r)[0],
                              pool_tasks=True)

    def surrogate_and_kl(self, batch):
        """TRPO's surrogate and mean KL over all timesteps of the pooled batch."""
        return obj.surrogate_and_kl(self.policy.forward, self.policy.params, batch, per_task=False)

    def iteration(self, rng):
        """Sample with theta, one TRPO step on that batch. Returns rllab-named statistics."""
        start = time.time()
        _, batch, data, stats = self.sample_support(rng)
        if self.time_xla_next:
            (data,) = self.choose_compilation((data,), lambda pad: (self.loss_inputs(batch, True, pad),))
        stats.update(self.step(data))
        return finish_stats(stats, start, batch)


class Pretrainer(Trainer):
    """The pretrained baseline (the original's use_maml=False): one Adam step (`optimizer`, lr
    config.pretrain_lr) per iteration on the mean REINFORCE loss of all tasks' batches."""

    def __init__(self, policy, vec_env, config):
        super().__init__(policy, vec_env, config)
        self.optimizer = adam(config.pretrain_lr)
        self.loss = tf.function(self._loss, reduce_retracing=True, autograph=False)
        self.adam_step = tf.function(self._adam_step, reduce_retracing=True, autograph=False)

    def _loss(self, data):
        return tf.reduce_mean(obj.reinforce_losses(self.policy.forward, self.policy.params, data))

    def _adam_step(self, data):
        with tf.GradientTape() as tape:
            loss = self._loss(data)
        grads = tape.gradient(loss, self.policy.params)
        self.optimizer.apply_gradients(zip(grads, self.policy.model.trainable_variables))
        return loss

    def iteration(self, rng):
        """Sample with theta, one Adam step on that batch. Returns rllab-named statistics."""
        start = time.time()
        _, batch, data, stats = self.sample_support(rng)
        stats["LossBefore"] = float(self.loss(data))
        self.adam_step(data)
        stats["LossAfter"] = float(self.loss(data))
        return finish_stats(stats, start, batch)


TRAINERS = {"maml": MAMLTRPO, "pretrain": Pretrainer, "oracle": OracleTRPO}


def return_stats(batch, prefix):
    """rllab's return statistics of a batch, columns prefixed '0' (support) or '1' (query)."""
    return return_columns(batch.undiscounted_returns(), prefix)


def return_columns(returns, prefix):
    """rllab's return statistics of the paths' undiscounted `returns` (1-D), columns prefixed `prefix`."""
    return {prefix + "AverageReturn": float(returns.mean()), prefix + "StdReturn": float(returns.std()),
            prefix + "MaxReturn": float(returns.max()), prefix + "MinReturn": float(returns.min()),
            prefix + "NumTrajs": int(returns.size)}


def finish_stats(stats, start, *batches):
    """Close an iteration's statistics: dLoss, EnvSteps of `batches` and the seconds spent
    sampling them (SampleTime), ItrTime since `start`."""
    stats["dLoss"] = stats["LossBefore"] - stats["LossAfter"]
    stats["EnvSteps"] = sum(b.num_steps for b in batches)
    stats["SampleTime"] = sum(b.seconds for b in batches)
    stats["ItrTime"] = time.time() - start
    return stats


def _numpy(values):
    return tuple(v.numpy() for v in values)
