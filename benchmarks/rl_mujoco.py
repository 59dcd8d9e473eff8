"""Sampling speed of the MuJoCo locomotion tasks; prints a markdown table.

    python benchmarks/rl_mujoco.py [--envs=cheetah_dir,ant_vel] [--meta_batch_size=40] \
        [--fast_batch_size=20] [--physics_steps=200] [--loop_tasks=10] [--workers=2]

Per env, all rates in env steps per second, E = meta_batch_size x fast_batch_size envs:
  - physics: MuJoCo's batch stepping alone (`LocomotionSim.batch.step`, mj_step and the
    forward pass at the new state) with fixed random actions, on 1 thread and on all;
  - env, no policy: `LocomotionSim.step` with fixed random actions (physics + the numpy
    observations, rewards, termination);
  - sampling: a full sampling pass as in training (`rl.sampler.rollout`: all tasks x
    trajectories at once, horizon 200, batches counted in steps, one batched call of the
    MAML policy's learner act_fn per time step), timed after a warm-up pass; its wall
    time split into physics (inside the vec env) and policy;
  - run out: the same passes stepping every started path to its end
    (`stop_dropped=False`, what the sampler did before it stopped paths the collector
    provably drops; same batches), alternating pass by pass with the default;
  - old loop: the same sampling pass with the per-MjData Python loop the batch replaced
    (`rl.envs.locomotion_loop`), on `loop_tasks` of the tasks.
`--workers=2` adds rows for the worker-process vec env (rl/envs/parallel.py). The machine
may be shared: the load average and the sampling pass's process CPU time (2 x wall = both
cores busy) are printed too. Run timings alone (on the shared machine: bash ~/bench.sh ...).
"""
import os
import time

import numpy as np
from absl import app, flags

import host  # benchmarks/host.py

FLAGS = flags.FLAGS
flags.DEFINE_list("envs", ["cheetah_dir", "ant_vel"], "Envs to time (the vel and dir tasks share their physics).")
flags.DEFINE_integer("meta_batch_size", 40, "Tasks.")
flags.DEFINE_integer("fast_batch_size", 20, "Trajectories per task.")
flags.DEFINE_integer("physics_steps", 200, "Steps of all envs timed for the physics-only rates.")
flags.DEFINE_integer("loop_tasks", 10, "Tasks of the old loop's sampling pass (0: skip it).")
flags.DEFINE_list("workers", [], "Also time the worker-process vec env with these worker counts.")
flags.DEFINE_integer("repeats", 1, "Timed sampling passes per row.")


class _Timed:
    """Accumulates wall time spent in a callable."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args):
        start = time.perf_counter()
        out = self.fn(*args)
        self.seconds += time.perf_counter() - start
        return out


class _TimedEnv:
    """A vec env that times its calls and counts the env steps it takes."""

    def __init__(self, env):
        self.env = env
        self.num_envs, self.act_dim, self.obs_dim = env.num_envs, env.act_dim, env.obs_dim
        self.terminates = env.terminates
        self.stepped = 0
        self._step = _Timed(env.step)
        self.reset = _Timed(env.reset)
        self.set_tasks = _Timed(env.set_tasks)

    def step(self, actions, active):
        self.stepped += int(np.sum(active))
        return self._step(actions, active)

    @property
    def seconds(self):
        return self._step.seconds + self.reset.seconds + self.set_tasks.seconds


def physics_rates(name, num_envs, steps, nthread):
    """(batch.step rate, LocomotionSim.step rate) with one fixed random action per env."""
    from rl.envs.locomotion import LocomotionSim
    sim = LocomotionSim(name, num_envs, seed=0, nthread=nthread)
    sim.set_tasks(sim.family.sample_tasks(num_envs, np.random.default_rng(0)))
    ctrl = np.random.default_rng(1).uniform(sim.ctrl_low, sim.ctrl_high, size=(num_envs, sim.act_dim))
    rates = []
    for step in (lambda: sim.batch.step(None, 1, sim.forward_stage), lambda: sim.step(ctrl)):
        sim.reset()
        sim.step(ctrl)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(num_envs * steps / (time.perf_counter() - start))
    return rates


def sampling(vec, tasks, fb, act, rng, repeats, stop_dropped=True):
    """(kept steps/s, stepped steps/s, wall s, physics s, policy s, CPU s) of `repeats`
    sampling passes. Kept steps are the batch's; the env steps more when paths end early
    (the ant), as paths that rllab's collector would not keep are sampled until they are
    provably dropped (or, `stop_dropped=False`, to their ends)."""
    from rl.sampler import rollout
    env, policy = _TimedEnv(vec), _Timed(act)
    wall, cpu = time.perf_counter(), time.process_time()
    steps = sum(rollout(env, tasks, fb, 200, policy, rng, fb * 200, stop_dropped=stop_dropped).num_steps
                for _ in range(repeats))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return steps / wall, env.stepped / wall, wall, env.seconds, policy.seconds, cpu


def alternating(vec, tasks, fb, act, repeats):
    """`sampling` with and without stopping dropped paths, pass by pass from the same action
    and start-noise states (the same batches): (stopping, running out), each summed over the
    passes."""
    runs = {True: [], False: []}
    for r in range(repeats):
        start_noise = vec.rng_state()
        for stop in (True, False):
            vec.set_rng_state(start_noise)
            runs[stop].append(sampling(vec, tasks, fb, act, np.random.default_rng(1 + r), 1, stop))
    out = []
    for stop in (True, False):
        wall = sum(x[2] for x in runs[stop])
        kept, stepped = (sum(x[i] * x[2] for x in runs[stop]) / wall for i in (0, 1))
        out.append((kept, stepped, wall) + tuple(sum(x[i] for x in runs[stop]) for i in (3, 4, 5)))
    return out


def main(argv):
    import mujoco
    import tensorflow as tf
    from rl.envs import make_vec_env
    from rl.envs.locomotion import available_cpus
    from rl.envs.locomotion_env import LocomotionVecEnv
    from rl.envs.locomotion_loop import LoopLocomotionSim
    from rl.policy import Policy
    from rl.sampler import rollout

    mb, fb = FLAGS.meta_batch_size, FLAGS.fast_batch_size
    lt = min(FLAGS.loop_tasks, mb)
    threads = available_cpus()
    rows, extra = [], []
    for name in FLAGS.envs:
        load = os.getloadavg()[0]
        phys1, _ = physics_rates(name, mb * fb, FLAGS.physics_steps, 1)
        phys, env_rate = physics_rates(name, mb * fb, FLAGS.physics_steps, threads)
        vec = make_vec_env(name, mb * fb)
        act = Policy(vec.obs_dim, vec.act_dim, seed=0).act_fn()
        tasks = vec.sample_tasks(mb, np.random.default_rng(0))
        rollout(vec, tasks, fb, 200, act, np.random.default_rng(0), fb * 200)  # warm-up (tracing)
        new, run_out = alternating(vec, tasks, fb, act, FLAGS.repeats)
        print(f"{name}: physics {phys:,.0f}, sampling {new[0]:,.0f} kept / {new[1]:,.0f} stepped steps/s, "
              f"running dropped paths out {run_out[0]:,.0f} / {run_out[1]:,.0f}", flush=True)
        old = None
        if lt:
            loop = LocomotionVecEnv(name, lt * fb, seed=0, sim_class=LoopLocomotionSim)
            rollout(loop, tasks[:lt], fb, 5, act, np.random.default_rng(0))  # the act_fn's trace for lt * fb rows
            old = sampling(loop, tasks[:lt], fb, act, np.random.default_rng(1), 1)
            print(f"{name}: old loop sampling {old[0]:,.0f} kept / {old[1]:,.0f} stepped steps/s", flush=True)
        rows.append((name, phys1, phys, env_rate, new, run_out, old, load))
        for workers in (int(w) for w in FLAGS.workers):
            sharded = make_vec_env(name, mb * fb, workers=workers)
            try:
                rollout(sharded, tasks, fb, 5, act, np.random.default_rng(0))
                extra.append((name, workers, sampling(sharded, tasks, fb, act, np.random.default_rng(1),
                                                     FLAGS.repeats)))
            finally:
                sharded.close()

    print(f"\nMuJoCo sampling, {mb} tasks x {fb} trajectories ({mb * fb} envs), horizon 200, rllab's step "
          f"budget; CPU: {host.describe()}; {threads} physics threads; MuJoCo {mujoco.__version__}, "
          f"TF {tf.__version__}. Env steps per second; sampling: kept (in the batch) / stepped.\n")
    print("| env | physics, 1 thread | physics | env, no policy | sampling with policy "
          "| wall s (physics / policy) | CPU s | dropped paths run out | kept-rate gain | old loop sampling "
          "| speed-up | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, phys1, phys, env_rate, new, run_out, old, load in rows:
        old_rate, ratio = ("-", "-") if old is None else (f"{old[0]:,.0f} / {old[1]:,.0f}", f"{new[1] / old[1]:.1f}x")
        print(f"| {name} | {phys1:,.0f} | {phys:,.0f} | {env_rate:,.0f} | {new[0]:,.0f} / {new[1]:,.0f} "
              f"| {new[2]:.1f} ({new[3]:.1f} / {new[4]:.1f}) | {new[5]:.1f} "
              f"| {run_out[0]:,.0f} / {run_out[1]:,.0f} | {new[0] / run_out[0]:.2f}x | {old_rate} | {ratio} "
              f"| {load:.1f} |")
    if 0 < lt < mb:
        print(f"\nOld loop: {lt} of the {mb} tasks ({lt * fb} envs); speed-up of the stepped rates.")
    if extra:
        print("\n| env | worker processes | sampling with policy | wall s (physics / policy) | main-process CPU s |")
        print("|---|---|---|---|---|")
        for name, workers, (kept, stepped, wall, phys, pol, cpu) in extra:
            print(f"| {name} | {workers} | {kept:,.0f} / {stepped:,.0f} | {wall:.1f} ({phys:.1f} / {pol:.1f}) "
                  f"| {cpu:.1f} |")


if __name__ == "__main__":
    app.run(main)
