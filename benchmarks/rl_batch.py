"""One support and one query batch of MAML-TRPO at the paper-checkpoint configuration (fast lr
0.1, paths of 200 steps; `flags/rl_cheetah_vel_paper_checkpoint.flags` at 40 tasks x 10 paths),
sampled once with seed 1: the data `trpo_step.py` and `ordered_sums.py` time the TRPO step's parts
on. No absl flags here, so that either script can import it."""
import time

import numpy as np


def paper_batch(env="cheetah_vel", meta_batch_size=40, fast_batch_size=10):
    """(learner, support, query, (support seconds, query seconds)): a `rl.maml.MAMLTRPO` on a
    seed-1 policy, its support batch and the query batch its adapted parameters sampled, as loss
    inputs, and how long each sampling took. The learner's policy, vec env and config are
    `learner.policy`, `learner.vec_env`, `learner.config`."""
    from rl.config import TrainConfig
    from rl.envs import make_vec_env
    from rl.maml import MAMLTRPO
    from rl.policy import Policy

    config = TrainConfig(env=env, mode="maml", fast_lr=0.1, meta_batch_size=meta_batch_size,
                         fast_batch_size=fast_batch_size, max_path_length=200, batch_in_steps=True)
    vec = make_vec_env(env, meta_batch_size * fast_batch_size)
    learner = MAMLTRPO(Policy(vec.obs_dim, vec.act_dim, seed=1), vec, config)
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    tasks, _, support, _ = learner.sample_support(rng)
    support_seconds = time.perf_counter() - start
    adapted = learner.compiled_adapt(support)
    start = time.perf_counter()
    _, query = learner.sample(tasks, rng, params=adapted)
    return learner, support, query, (support_seconds, time.perf_counter() - start)
