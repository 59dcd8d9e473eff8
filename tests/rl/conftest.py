import numpy as np
import pytest
import tensorflow as tf

import rl  # noqa: F401  (registers the gymnasium ids)
from rl.config import TrainConfig
from rl.envs import PointVecEnv
from rl.maml import MAMLTRPO
from rl.policy import Policy


def _synthetic_data(rng, n_tasks, n_steps, obs_dim=2, act_dim=2, dtype=tf.float64, terminated=True):
    """Random [task, step] data with a few masked (terminated) steps."""
    mask = np.ones((n_tasks, n_steps))
    if terminated:
        mask[:, -3:] = 0.0
    data = {
        "observations": rng.normal(size=(n_tasks, n_steps, obs_dim)) * 0.3,
        "actions": rng.normal(size=(n_tasks, n_steps, act_dim)),
        "advantages": rng.normal(size=(n_tasks, n_steps)),
        "means": rng.normal(size=(n_tasks, n_steps, act_dim)) * 0.1,
        "log_stds": np.full((n_tasks, n_steps, act_dim), -0.1),
        "rewards": rng.normal(size=(n_tasks, n_steps)),
        "mask": mask,
    }
    return {k: tf.constant(v, dtype) for k, v in data.items()}


@pytest.fixture
def synthetic_data():
    return _synthetic_data


@pytest.fixture
def small_learner():
    """float64 MAML-TRPO with a tiny ReLU policy (fast, exact enough for finite differences)."""
    policy = Policy(2, 2, hidden_sizes=(6, 5), activation="relu", dtype="float64", seed=3)
    # Non-zero biases and log-std so every parameter matters.
    for v in policy.params:
        v.assign(v.numpy() + 0.05 * np.random.default_rng(0).normal(size=v.shape))
    return MAMLTRPO(policy, PointVecEnv(3 * 2), TrainConfig(fast_lr=0.3, meta_batch_size=3, fast_batch_size=2,
                                                            batch_in_steps=False))


SMALL_CONFIG = dict(env="point", mode="maml", fast_lr=0.5, meta_batch_size=6, fast_batch_size=5,
                    max_path_length=100, n_itr=2, max_kl=0.01, discount=0.99, gae_lambda=1.0, seed=3,
                    hidden_activation="relu", cg_iters=10, cg_damping=1e-5, hvp_base_eps=1.0,
                    pretrain_lr=1e-3, keep_checkpoints=3, hidden_sizes=[100, 100])


@pytest.fixture
def small_config():
    """A plain rl.train config (a config.json-style dict, so the keys older runs lack take their
    old values) small enough for a few-second run."""
    return dict(SMALL_CONFIG)
