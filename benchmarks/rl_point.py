"""Speed of MAML-TRPO on the 2D point task; prints a markdown table.

    python benchmarks/rl_point.py [--iterations=3] [--meta_batch_size=20] [--fast_batch_size=20]

Rows: sampling alone (pre-update policy, all tasks x trajectories stepped at
once), and full meta-iterations (2 sampling passes, baseline fits, inner step,
TRPO step with 10 CG iterations of finite-difference HVPs, line search) for
MAML, and the pretrain / oracle trainers. The first iteration (tracing) is
excluded.
"""
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("iterations", 3, "Timed iterations per row (after one warm-up).")
flags.DEFINE_integer("meta_batch_size", 20, "Tasks per meta-iteration.")
flags.DEFINE_integer("fast_batch_size", 20, "Trajectories per task.")


def _time_iterations(learner, rng, n):
    learner.iteration(rng)  # warm-up: tf.function tracing
    times, steps = [], 0
    for _ in range(n):
        stats = learner.iteration(rng)
        times.append(stats["ItrTime"])
        steps += stats["EnvSteps"]
    return float(np.mean(times)), steps / float(np.sum(times))


def main(argv):
    import tensorflow as tf
    from rl.config import TrainConfig
    from rl.envs import make_vec_env
    from rl.maml import TRAINERS
    from rl.policy import Policy
    from rl.sampler import rollout

    mb, fb = FLAGS.meta_batch_size, FLAGS.fast_batch_size
    rows = []
    rng = np.random.default_rng(0)

    def learner_for(mode, m, f):
        config = TrainConfig(mode=mode, fast_lr=0.5, meta_batch_size=m, fast_batch_size=f, batch_in_steps=False)
        return TRAINERS[mode](Policy(4 if mode == "oracle" else 2, 2, seed=0),
                              make_vec_env("point", m * f, oracle=mode == "oracle"), config)

    learner = learner_for("maml", mb, fb)
    act = learner.policy.act_fn()
    tasks = learner.vec_env.sample_tasks(mb, rng)
    rollout(learner.vec_env, tasks, fb, 100, act, rng)
    start = time.time()
    steps = sum(rollout(learner.vec_env, tasks, fb, 100, act, rng).num_steps for _ in range(FLAGS.iterations))
    elapsed = time.time() - start
    rows.append(("sampling only (pre-update policy)", elapsed / FLAGS.iterations, steps / elapsed))
    rows.append(("MAML-TRPO meta-iteration", *_time_iterations(learner, rng, FLAGS.iterations)))

    for mode, m, f in (("pretrain", mb, fb), ("oracle", 10, 1)):
        learner = learner_for(mode, m, f)
        rows.append((f"{mode} iteration ({m} tasks x {f} trajs)", *_time_iterations(learner, rng, FLAGS.iterations)))

    print(f"\nPoint task, horizon 100, {mb} tasks x {fb} trajectories, TF {tf.__version__}, "
          f"{FLAGS.iterations} timed iterations\n")
    print("| what | seconds / iteration | env steps / s |")
    print("|---|---|---|")
    for name, sec, sps in rows:
        print(f"| {name} | {sec:.2f} | {sps:,.0f} |")


if __name__ == "__main__":
    app.run(main)
