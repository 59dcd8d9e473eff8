"""Sampling speed of the MuJoCo locomotion tasks; prints a markdown table.

    python benchmarks/rl_mujoco.py [--envs=cheetah_dir,ant_vel] [--workers=0,2] \
        [--meta_batch_size=40] [--fast_batch_size=20] [--repeats=1]

One row per env and worker count: a full sampling pass as in training (all
tasks x trajectories stepped at once, horizon 200, batches counted in steps,
one batched policy call per time step with the MAML policy's learner act_fn),
timed after a warm-up pass. Physics = time inside the vec env (including the
worker round trips), policy = time in the policy call. The machine is shared,
so the load average and the process CPU time are printed too.
"""
import os
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("envs", ["cheetah_vel", "cheetah_dir", "ant_vel", "ant_dir"], "Envs to time.")
flags.DEFINE_list("workers", ["0", "2"], "Worker-process counts to time (0 = in this process).")
flags.DEFINE_integer("meta_batch_size", 40, "Tasks.")
flags.DEFINE_integer("fast_batch_size", 20, "Trajectories per task.")
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
    def __init__(self, env):
        self.env = env
        self.num_envs, self.act_dim, self.obs_dim = env.num_envs, env.act_dim, env.obs_dim
        self.step = _Timed(env.step)
        self.reset = _Timed(env.reset)
        self.set_tasks = _Timed(env.set_tasks)

    @property
    def seconds(self):
        return self.step.seconds + self.reset.seconds + self.set_tasks.seconds

    def sample_tasks(self, n, rng):
        return self.env.sample_tasks(n, rng)


def main(argv):
    import tensorflow as tf
    from rl.envs import make_vec_env
    from rl.policy import Policy
    from rl.sampler import rollout

    mb, fb, horizon = FLAGS.meta_batch_size, FLAGS.fast_batch_size, 200
    rows = []
    for name in FLAGS.envs:
        for workers in (int(w) for w in FLAGS.workers):
            vec = make_vec_env(name, mb * fb, workers=workers)
            try:
                policy = Policy(vec.obs_dim, vec.act_dim, seed=0)
                rng = np.random.default_rng(0)
                tasks = vec.sample_tasks(mb, rng)
                act = policy.act_fn()
                rollout(vec, tasks, fb, horizon, act, rng, fb * horizon)  # warm-up (tracing)
                env, policy = _TimedEnv(vec), _Timed(act)
                load = os.getloadavg()[0]
                wall, cpu = time.perf_counter(), time.process_time()
                steps = sum(rollout(env, tasks, fb, horizon, policy, rng, fb * horizon).num_steps
                            for _ in range(FLAGS.repeats))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                rows.append((name, workers, steps / wall, wall, env.seconds, policy.seconds, cpu, load))
                print(f"{name} workers={workers}: {steps / wall:,.0f} steps/s", flush=True)
            finally:
                if hasattr(vec, "close"):
                    vec.close()
    print(f"\nMuJoCo sampling, {mb} tasks x {fb} trajectories, horizon {horizon}, TF {tf.__version__}, "
          f"{os.cpu_count()} CPUs\n")
    print("| env | workers | env steps / s | wall s | physics s | policy s | main-process CPU s | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, workers, sps, wall, phys, pol, cpu, load in rows:
        print(f"| {name} | {workers} | {sps:,.0f} | {wall:.1f} | {phys:.1f} | {pol:.1f} | {cpu:.1f} | {load:.1f} |")


if __name__ == "__main__":
    app.run(main)
