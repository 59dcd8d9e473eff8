import gymnasium as gym
import numpy as np
import pytest

import rl  # noqa: F401
from rl.envs import GymnasiumVecEnv, Point2DEnv, PointVecEnv, make_point, make_point_oracle
from rl.sampler import rollout


def test_point_dynamics_reward_and_termination():
    env = Point2DEnv(goal=[0.3, -0.2])
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, truncated, _ = env.step(np.array([0.1, -0.05]))
    np.testing.assert_allclose(obs, [0.1, -0.05])
    np.testing.assert_allclose(reward, -np.hypot(0.2, 0.15))
    assert not terminated and not truncated
    env.step(np.array([0.1, -0.1]))
    obs, reward, terminated, _, _ = env.step(np.array([0.095, -0.045]))  # (0.295, -0.195)
    assert terminated  # both |dx|, |dy| < 0.01
    np.testing.assert_allclose(reward, -np.hypot(0.005, 0.005))


def test_termination_needs_both_coordinates_close():
    env = Point2DEnv(goal=[0.05, 0.3])
    env.reset()
    _, _, terminated, _, _ = env.step(np.array([0.05, 0.0]))
    assert not terminated


def test_goal_persists_across_resets_until_set_task():
    env = Point2DEnv()
    env.reset(seed=3)
    goal = env.get_task()
    assert np.all(np.abs(goal) <= 0.5)
    env.step(np.array([0.1, 0.1]))
    env.reset()
    np.testing.assert_array_equal(env.get_task(), goal)
    env.set_task([0.1, 0.2])
    obs, info = env.reset()
    np.testing.assert_array_equal(info["goal"], [0.1, 0.2])
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    env.reset(options={"task": [-0.4, 0.0]})
    np.testing.assert_array_equal(env.get_task(), [-0.4, 0.0])


def test_sample_tasks_uniform_in_box():
    goals = Point2DEnv().sample_tasks(1000, np.random.default_rng(0))
    assert goals.shape == (1000, 2)
    assert goals.min() >= -0.5 and goals.max() <= 0.5 and goals.min() < -0.45 and goals.max() > 0.45


def test_normalized_actions_are_rescaled_then_clipped():
    env = make_point(goal=[0.4, 0.4])
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.reset()
    obs, *_ = env.step(np.array([0.5, 3.0]))  # 0.1*0.5 = 0.05; 0.3 clipped to 0.1
    np.testing.assert_allclose(obs, [0.05, 0.1])
    obs, *_ = env.step(np.array([-7.0, -1.0]))
    np.testing.assert_allclose(obs, [-0.05, 0.0])


def test_gymnasium_make_point_and_oracle():
    env = gym.make("MAML/Point2D-v0")
    env.unwrapped.set_task([0.2, 0.1])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2,)
    obs, reward, *_ = env.step(env.action_space.sample() * 0 + 1.0)
    np.testing.assert_allclose(obs, [0.1, 0.1])
    np.testing.assert_allclose(reward, -0.1)
    assert env.spec.max_episode_steps == 100
    oracle = gym.make("MAML/Point2DOracle-v0")
    oracle.unwrapped.set_task([0.2, 0.1])
    obs, _ = oracle.reset()
    np.testing.assert_allclose(obs, [0.0, 0.0, 0.2, 0.1])
    assert oracle.observation_space.shape == (4,)


def test_vectorised_point_env_matches_gymnasium_env():
    rng = np.random.default_rng(0)
    goals = rng.uniform(-0.5, 0.5, size=(3, 2))
    vec = PointVecEnv(3, oracle=True)
    vec.set_tasks(goals)
    envs = [make_point_oracle(goal=g) for g in goals]
    obs_v = vec.reset()
    obs_g = np.array([e.reset()[0] for e in envs])
    np.testing.assert_allclose(obs_v, obs_g)
    for _ in range(10):
        actions = rng.normal(size=(3, 2)) * 2
        obs_v, rew_v, done_v = vec.step(actions)
        res = [e.step(a) for e, a in zip(envs, actions)]
        np.testing.assert_allclose(obs_v, [r[0] for r in res])
        np.testing.assert_allclose(rew_v, [r[1] for r in res])
        np.testing.assert_array_equal(done_v, [r[2] for r in res])


@pytest.mark.parametrize("make_env", [lambda n: PointVecEnv(n),
                                      lambda n: GymnasiumVecEnv([lambda: gym.make("MAML/Point2D-v0")] * n)])
def test_rollout_masks_steps_after_termination(make_env):
    """Goal reachable in 2 steps: a policy heading there exactly stops the path."""
    tasks = np.array([[0.2, 0.2], [-0.5, 0.5]])
    env = make_env(4)
    act = lambda obs: (np.ones_like(obs) * np.array([1.0, 1.0]), np.full_like(obs, np.log(1e-6)))
    batch = rollout(env, tasks, n_traj=2, horizon=6, act_fn=act, rng=np.random.default_rng(0))
    assert batch.mask.shape == (2, 2, 6)
    np.testing.assert_array_equal(batch.mask[0], [[1, 1, 0, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(batch.mask[1], np.ones((2, 6)))
    np.testing.assert_allclose(batch.rewards[0, 0], [-np.hypot(0.1, 0.1), 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(batch.observations[1, 0, 2], [0.2, 0.2], atol=1e-6)
    assert batch.num_steps == 2 * 2 + 2 * 6


def test_rollout_checks_env_count():
    with pytest.raises(ValueError, match="tasks x"):
        rollout(PointVecEnv(5), np.zeros((2, 2)), n_traj=2, horizon=3, act_fn=None, rng=None)
