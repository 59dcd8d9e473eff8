"""MAML-TRPO on a tf.distribute strategy (`--distribute=mirrored|multi_worker`): the meta-batch
split by task across replicas, every TRPO quantity an all-reduce, so every process takes the
single-device step.

What is split. Every process draws the iteration's T = meta_batch_size tasks from the same
seeded stream (the same tasks whatever the replica count) and keeps those of its replicas:
replica r of R holds tasks [r n, (r + 1) n), n = T / R (`TaskSplit`). A process samples,
fits the baselines of and adapts its own tasks only. A MirroredStrategy (one process, all
replicas) samples the whole batch exactly as `--distribute=none`; across processes each samples
its slice with `rl.sampler.SharedNoise`, the rows of the whole batch's action noise, so on the
point task a task's paths are the single-process ones (to the round-off of a policy forward pass
over fewer envs). MuJoCo envs draw their start noise from each process's own generator,
reseeded per iteration and process: there the paths depend on the number of processes.

What is reduced. The meta-objective and its KL (`rl.maml.MAMLTRPO.surrogate_and_kl`) are a
mean over tasks and a mean over all query steps:

    L(theta)  = (1/T) sum_i L_i(theta'_i),       KL(theta) = (1/N) sum_{i,t} KL_{i,t}(theta'_i),

N the number of valid query steps of all tasks. Each replica computes its shares,
sum_{i in r} L_i / T and sum_{(i,t) in r} KL_{i,t} / N (`rl.objectives.surrogate_and_kl_shares`;
N is itself an all-reduce of the per-process step counts), and the shares and their gradients
are summed over the replicas (one all-reduce SUM per evaluation): the surrogate gradient, the
KL gradient of each finite-difference Hessian-vector product and the loss and KL of each
line-search candidate (`DistributedMAMLTRPO`). `rl.trpo.ConjugateGradientOptimizer` runs
unchanged on the host of every process with these identical numbers, so conjugate gradient,
the step size and the accepted backtrack are the same everywhere and every process moves its
own copy of the policy (plain variables, not mirrored ones) to the same parameters. The
progress columns are computed from all paths (their returns gathered in task order).

Processes. The chief (worker 0) alone writes --logdir (checkpoints, progress.csv, TensorBoard):
it restores a checkpoint and sends the policy, the sampling RNG's state and the iteration to
the others (`broadcast_run_state`), so workers on other machines need no shared disk. Before
that first collective every process agrees to start (`report.distribution.agree_to_start`, in
rl.trainer: the chief's checks of --logdir passed, every worker trains the chief's settings).
Every iteration the processes agree whether one of them was asked to stop
(`report.distribution.AgreedStop`, in rl.trainer).
"""
import json
import time

import numpy as np
import tensorflow as tf

from report.distribution import broadcast_from_chief, per_replica_count
from rl import objectives as obj
from rl import policy as pol
from rl.maml import MAMLTRPO, finish_stats, return_columns
from rl.sampler import SharedNoise

SUM = tf.distribute.ReduceOp.SUM


class TaskSplit:
    """The tasks of a batch of `num_tasks` that this process holds on `strategy`: replica r
    holds tasks [r n, (r + 1) n), n = num_tasks / replicas (a ValueError naming `flag` if they
    do not divide); this process's replicas are consecutive, so it holds tasks
    [first, first + count)."""

    def __init__(self, strategy, num_tasks, flag="meta_batch_size"):
        self.strategy, self.num_tasks = strategy, num_tasks
        self.tasks_per_replica = per_replica_count(num_tasks, strategy, flag)
        ids = sorted(int(i) for i in strategy.experimental_local_results(
            strategy.experimental_distribute_values_from_function(lambda context: context.replica_id_in_sync_group)))
        if ids != list(range(ids[0], ids[0] + len(ids))):
            raise ValueError(f"this process's replicas {ids} are not consecutive")
        self.local_replicas = len(ids)
        self.first, self.count = ids[0] * self.tasks_per_replica, len(ids) * self.tasks_per_replica
        self.processes = strategy.num_replicas_in_sync // len(ids)
        self.process_index = ids[0] // len(ids)
        self._gather = tf.function(lambda values: strategy.gather(values, axis=0), reduce_retracing=True,
                                   autograph=False)

    @property
    def one_process(self):
        """True if this process holds every task (a MirroredStrategy)."""
        return self.processes == 1

    def local(self, values):
        """This process's tasks of an array over all tasks."""
        return values[self.first:self.first + self.count]

    def per_replica(self, data):
        """A nest (dict, list) of [count, ...] tensors (this process's tasks) as per-replica
        values, replica r taking its n tasks."""
        n, first_replica = self.tasks_per_replica, self.first // self.tasks_per_replica

        def replica_slice(context):
            k = context.replica_id_in_sync_group - first_replica
            return tf.nest.map_structure(lambda value: value[k * n:(k + 1) * n], data)

        return self.strategy.experimental_distribute_values_from_function(replica_slice)

    def concat_local(self, per_replica):
        """The inverse of `per_replica` for a list of per-replica tensors: each concatenated over
        this process's replicas, in task order."""
        return [tf.concat(self.strategy.experimental_local_results(v), axis=0) for v in per_replica]

    def gather(self, values):
        """A numpy array over this process's tasks (first axis: anything in task order, e.g. its
        paths) -> the array over all processes, in task order. One process: `values` itself."""
        values = np.asarray(values)
        if self.one_process:
            return values
        first_replica = self.first // self.tasks_per_replica
        per_replica = self.strategy.experimental_distribute_values_from_function(  # all on the first replica
            lambda context: tf.constant(values if context.replica_id_in_sync_group == first_replica else values[:0]))
        return self._gather(per_replica).numpy()

    def total(self, value):
        """The sum over processes of a number (exact for integers)."""
        return float(np.sum(self.gather(np.array([value], np.float64))))

    def largest(self, value):
        """The largest over processes of an integer."""
        return int(np.max(self.gather(np.array([value], np.float64))))

    def noise(self, rng, num_trajs, act_dim):
        """The action noise of this process's rollout of its tasks (`rl.sampler.SharedNoise`),
        or None if it holds every task (then it draws as one device does)."""
        if self.one_process:
            return None
        return SharedNoise(rng, self.num_tasks * num_trajs, self.first * num_trajs, act_dim, self.largest)

    def reseed_start_noise(self, vec_env, seed, iteration):
        """Across processes, MuJoCo envs (an env with `set_rng_state`) draw their start noise
        from a generator per process seeded (seed, iteration, process): the chief's checkpoint
        cannot hold the other processes' generators, and a resumed run draws the same."""
        if self.one_process or not hasattr(vec_env, "set_rng_state"):
            return
        shards = len(vec_env.rng_state())
        vec_env.set_rng_state([np.random.default_rng([seed, iteration, self.process_index, k]).bit_generator.state
                               for k in range(shards)])


class DistributedMAMLTRPO(MAMLTRPO):
    """`rl.maml.MAMLTRPO` with its meta-batch split across the replicas of `strategy`
    (see the module docstring). `vec_env` holds this process's tasks (`TaskSplit.count` x
    fast_batch_size envs; `split`, the `TaskSplit` of config.meta_batch_size on `strategy` the
    caller sized them with, if it made one). `iteration(rng)` returns the statistics of the
    whole batch."""

    def __init__(self, policy, vec_env, config, strategy, split=None):
        if config.jit_compile:
            raise ValueError("jit_compile: the distributed trainer runs its all-reduced gradients as graphs")
        self.strategy = strategy
        self.split = TaskSplit(strategy, config.meta_batch_size) if split is None else split
        super().__init__(policy, vec_env, config)
        self.compiled_adapt = tf.function(self._adapt_replicas, reduce_retracing=True, autograph=False)
        self.surrogate_gradient = tf.function(lambda *data: self._all_reduced(self._gradient_of(0), *data),
                                              reduce_retracing=True, autograph=False)
        self.kl_gradient = tf.function(lambda *data: self._all_reduced(self._gradient_of(1), *data),
                                       reduce_retracing=True, autograph=False)
        self.compiled_surrogate_and_kl = tf.function(lambda *data: self._all_reduced(self._shares, *data),
                                                     reduce_retracing=True, autograph=False)

    def envs_needed(self, config):
        return self.split.count * config.fast_batch_size

    def _adapt_replicas(self, support):
        """theta'_i of this process's tasks: `adapt` on each replica's tasks."""
        return self.split.concat_local(self.strategy.run(self.adapt, args=(support,)))

    def _shares(self, support, query, norms):
        """This replica's shares (L, KL) of the meta-objective (`rl.objectives.surrogate_and_kl_shares`);
        norms = [T, N]."""
        return obj.surrogate_and_kl_shares(self.policy.forward, self.adapt(support), query, norms[0], norms[1])

    def _gradient_of(self, index):
        def value_and_flat_gradient(support, query, norms):
            params = self.policy.params
            with tf.GradientTape() as tape:
                value = self._shares(support, query, norms)[index]
            grads = tape.gradient(value, params)
            return value, pol.flatten([tf.zeros_like(p) if g is None else g for p, g in zip(params, grads)])
        return value_and_flat_gradient

    def _all_reduced(self, replica_fn, support, query, norms):
        """sum over all replicas of replica_fn(its support, its query, norms), in every process."""
        def replica(support, query):
            return tf.distribute.get_replica_context().all_reduce(SUM, replica_fn(support, query, norms))

        result = self.strategy.run(replica, args=(support, query))
        return tuple(self.strategy.experimental_local_results(v)[0] for v in result)

    def sample(self, tasks, rng, params=None):
        """As `Trainer.sample`, on this process's tasks, drawing its rows of the batch's noise."""
        return super().sample(tasks, rng, params,
                              noise=self.split.noise(rng, self.config.fast_batch_size, self.vec_env.act_dim))

    def iteration(self, rng):
        """One meta-iteration (`MAMLTRPO.iteration`) of the whole batch, this process's share of it."""
        start = time.time()
        c, split = self.config, self.split
        tasks = split.local(self.vec_env.sample_tasks(c.meta_batch_size, rng))
        support_batch, support = self.sample(tasks, rng)
        stats = return_columns(split.gather(support_batch.undiscounted_returns()), "0")
        stats["AveragePolicyStd"] = float(np.exp(self.policy.params[-1].numpy()).mean())
        support = split.per_replica(support)
        adapted = self.compiled_adapt(support)
        query_batch, query = self.sample(tasks, rng, params=adapted)
        stats.update(return_columns(split.gather(query_batch.undiscounted_returns()), "1"))
        norms = tf.constant([c.meta_batch_size, split.total(float(query_batch.num_steps))], self.policy.dtype)
        stats.update(self.step(support, split.per_replica(query), norms))
        self.last_iteration = {"tasks": tasks, "support_batch": support_batch, "query_batch": query_batch,
                               "adapted_params": adapted}
        env_steps = int(split.total(support_batch.num_steps + query_batch.num_steps))
        stats = finish_stats(stats, start, support_batch, query_batch)  # SampleTime: this process's
        stats["EnvSteps"] = env_steps  # all processes'
        return stats


_STATE_BYTES = 4096  # room for a numpy bit generator's state as JSON


def broadcast_run_state(strategy, variables, rng, iteration):
    """Give every process the chief's `variables`, sampling RNG state (`rng`, a numpy Generator,
    set in place) and `iteration`; returns the chief's iteration. Every process calls it once
    after the chief restored (or did not find) a checkpoint. Nothing to do in one process."""
    if len(strategy.extended.worker_devices) == strategy.num_replicas_in_sync:
        return iteration
    text = json.dumps(rng.bit_generator.state).encode()
    if len(text) >= _STATE_BYTES:
        raise ValueError(f"the RNG state takes {len(text)} bytes, more than {_STATE_BYTES}")
    state = tf.Variable(np.pad(np.frombuffer(text, np.uint8).astype(np.float64), (0, _STATE_BYTES - len(text))))
    iteration = broadcast_from_chief(strategy, list(variables) + [state], iteration)
    received = state.numpy().astype(np.uint8).tobytes().rstrip(b"\0")
    rng.bit_generator.state = json.loads(received.decode())
    return iteration


def split_inner_step(split, policy):
    """`rl.adaptation.compile_inner_step(policy)` with the tasks split across the replicas:
    (task-batched params, support, lr) of this process's tasks -> their adapted params, each
    replica adapting its own tasks (per task, so exactly as one device)."""
    def replica_step(params, support, lr):
        return obj.inner_step(policy.forward, params, support, lr)

    @tf.function(reduce_retracing=True, autograph=False)
    def on_replicas(params, support, lr):
        return split.concat_local(split.strategy.run(replica_step, args=(params, support, lr)))

    return lambda params, support, lr: on_replicas(split.per_replica(params), split.per_replica(support), lr)
