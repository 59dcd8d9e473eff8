"""gymnasium wrappers reproducing rllab's `normalize` and maml_rl's oracle envs."""
import gymnasium as gym
import numpy as np


class NormalizeAction(gym.ActionWrapper):
    """rllab `NormalizedEnv` action scaling: a in [-1, 1] -> lb + (a+1)(ub-lb)/2, clipped.

    The policy's Gaussian samples are not clipped (log-probs use the raw sample);
    only what reaches the wrapped env is. Hence the exposed action space is
    [-1, 1] but any real action is accepted.
    """

    def __init__(self, env):
        super().__init__(env)
        self._lb = env.action_space.low
        self._ub = env.action_space.high
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=env.action_space.shape,
                                           dtype=env.action_space.dtype)

    def action(self, action):
        scaled = self._lb + (np.asarray(action) + 1.0) * 0.5 * (self._ub - self._lb)
        return np.clip(scaled, self._lb, self._ub)


class OracleObservation(gym.ObservationWrapper):
    """Appends the task parameter (e.g. the goal) to every observation."""

    def __init__(self, env):
        super().__init__(env)
        task = np.atleast_1d(np.zeros(self._task_dim()))
        low = np.concatenate([env.observation_space.low, np.full(task.shape, -np.inf)])
        high = np.concatenate([env.observation_space.high, np.full(task.shape, np.inf)])
        self.observation_space = gym.spaces.Box(low, high, dtype=env.observation_space.dtype)

    def _task_dim(self):
        task = self.env.unwrapped.get_task()
        if task is None:
            task = self.env.unwrapped.sample_tasks(1, np.random.default_rng(0))[0]
        return np.atleast_1d(task).shape

    def observation(self, observation):
        task = np.atleast_1d(self.env.unwrapped.get_task())
        return np.concatenate([observation, task]).astype(self.observation_space.dtype)
