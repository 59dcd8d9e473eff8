"""A MAML-TRPO run's sampling at its latest checkpoint, stopping dropped paths against stepping every
started path to its end; prints a markdown table.

    python benchmarks/rl_run_sampling.py --run=~/runs/rl_ant_dir [--rounds=2]

Each round samples one training iteration's two batches as `rl.train` does (`MAMLTRPO`: the
support batch with theta, the inner step, the query batch with the adapted parameters) twice, with
`rl.sampler.rollout`'s `stop_dropped` on and then off, from the same action and start-noise states:
both draw the same batches (checked), and the table gives their seconds and env steps. The first
round's first pass also traces the policy. `benchmarks/rl_mujoco.py` measures the same with the
initial policy; a trained one falls less or more, which sets how many paths are dropped. The table
also gives the seconds spent in MuJoCo's batch stepping itself (`LocomotionSim.batch.step`, the C
physics on all threads) and what they imply: the physics rate at the states this policy visits, and
the kept rate the sampler would reach if nothing but that physics took time (physics rate x the
share of stepped steps kept; the forward passes of resets are not counted, so it is an upper bound;
"-" for the point task, which has no MuJoCo physics). Pause the run's training while this runs
(the machine may be shared).
"""
import dataclasses
import functools
import os
import time

import numpy as np
from absl import app, flags

import host  # benchmarks/host.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "A MAML-TRPO run directory (rl.train --logdir).", required=True)
flags.DEFINE_integer("rounds", 2, "Iterations' sampling per mode, alternating.")


def _learner(logdir):
    """The run's MAMLTRPO at its latest checkpoint, its vec env with a counter of env steps, and a
    timer of the vec env's MuJoCo batch stepping ([seconds]; 0 for the point env)."""
    from rl import maml, run_io
    from rl.config import TrainConfig
    from rl.envs import make_vec_env
    from rl.policy import Policy
    record = run_io.read_config(logdir)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig.from_dict({k: v for k, v in record.items() if k in fields})
    if config.mode != "maml":
        raise SystemExit(f"--run: {logdir} was trained with --mode={config.mode}; this times MAML's sampling")
    vec = make_vec_env(config.env, config.meta_batch_size * config.fast_batch_size, seed=config.seed)
    policy = Policy(vec.obs_dim, vec.act_dim, config.hidden_sizes, config.hidden_activation, seed=config.seed)
    run_io.RunState(logdir, policy.model).restore(require=True)
    stepped, step = [0], vec.step

    def counted(actions, active):
        stepped[0] += int(np.sum(active))
        return step(actions, active)
    vec.step = counted
    physics = [0.0]
    if hasattr(vec, "sim"):  # the MuJoCo tasks (the point env is numpy)
        batch_step = vec.sim.batch.step

        def timed(*args, **kwargs):
            start = time.perf_counter()
            batch_step(*args, **kwargs)
            physics[0] += time.perf_counter() - start
        vec.sim.batch.step = timed
    return maml.MAMLTRPO(policy, vec, config), vec, stepped, physics, config


def main(argv):
    from rl import maml, sampler
    logdir = os.path.expanduser(FLAGS.run)
    learner, vec, stepped, physics, config = _learner(logdir)
    rows = {True: [], False: []}
    for r in range(FLAGS.rounds):
        # The MuJoCo envs' start noise (the point env starts every path in the same state).
        start_noise, batches = (vec.rng_state() if hasattr(vec, "rng_state") else None), {}
        for stop in (True, False):
            if start_noise is not None:
                vec.set_rng_state(start_noise)
            maml.rollout = functools.partial(sampler.rollout, stop_dropped=stop)
            rng = np.random.default_rng(100 + r)
            stepped[0], physics[0] = 0, 0.0
            tasks, support_batch, support, _ = learner.sample_support(rng)
            query_batch, _ = learner.sample(tasks, rng, params=learner.compiled_adapt(support))
            support_s, query_s = support_batch.seconds, query_batch.seconds  # the rollouts' wall time
            batches[stop] = (support_batch, query_batch)
            rows[stop].append((support_s, query_s, stepped[0], support_batch.num_steps + query_batch.num_steps,
                               physics[0]))
            print(f"round {r} stop_dropped={stop}: support {support_s:.1f} s, query {query_s:.1f} s "
                  f"({physics[0]:.1f} s MuJoCo stepping), {stepped[0]:,} stepped, {rows[stop][-1][3]:,} kept",
                  flush=True)
        for a, b in zip(batches[True], batches[False]):
            if not all(np.array_equal(getattr(a, k), getattr(b, k)) for k in sampler._KEYS):
                raise SystemExit("the two modes sampled different batches: a sampler bug")
    maml.rollout = sampler.rollout
    print(f"\n{logdir}: {config.env}, {config.meta_batch_size} tasks x {config.fast_batch_size} paths, "
          f"{FLAGS.rounds} iterations' sampling per mode; CPU: {host.describe()}. Same batches in both.\n")
    print("| rollout | support s | query s | sampling s | env steps stepped / kept | kept steps/s | speed-up "
          "| MuJoCo stepping s | physics steps/s | kept steps/s if only the physics took time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    total = {stop: sum(r[0] + r[1] for r in rows[stop]) for stop in rows}
    for stop, name in ((True, "stop dropped paths (default)"), (False, "step every path to its end")):
        s, q, st, kept, phys = (sum(r[i] for r in rows[stop]) for i in range(5))
        physics_columns = f"{phys:.1f} | {st / phys:,.0f} | {kept / phys:,.0f}" if phys else "- | - | -"
        print(f"| {name} | {s:.1f} | {q:.1f} | {total[stop]:.1f} | {st:,} / {kept:,} | {kept / total[stop]:,.0f} "
              f"| {total[False] / total[stop]:.2f}x | {physics_columns} |")


if __name__ == "__main__":
    app.run(main)
