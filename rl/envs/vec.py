"""Vectorised-env adapter over a list of gymnasium task envs.

`rl.sampler` needs `set_tasks`, `reset()` and `step(actions, active)` on a batch
of envs. The point task has a numpy implementation (`PointVecEnv`); any
gymnasium env whose unwrapped env has `set_task` (e.g. future MuJoCo tasks) can
be used through this adapter. Only active (not yet terminated) envs are
stepped, so an env is never stepped past its episode end.
"""
import numpy as np


class GymnasiumVecEnv:
    def __init__(self, env_fns):
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.obs_dim = int(np.prod(self.envs[0].observation_space.shape))
        self.act_dim = int(np.prod(self.envs[0].action_space.shape))
        self._last_obs = np.zeros((self.num_envs, self.obs_dim))

    def sample_tasks(self, n, rng):
        return self.envs[0].unwrapped.sample_tasks(n, rng)

    def set_tasks(self, tasks):
        if len(tasks) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} tasks, got {len(tasks)}")
        for env, task in zip(self.envs, tasks):
            env.unwrapped.set_task(task)

    def reset(self, mask=None):
        """Reset all envs (or only where `mask`); returns all current observations."""
        which = range(self.num_envs) if mask is None else np.flatnonzero(mask)
        for i in which:
            self._last_obs[i] = np.ravel(self.envs[i].reset()[0])
        return self._last_obs.copy()

    def step(self, actions, active=None):
        active = np.ones(self.num_envs, bool) if active is None else np.asarray(active, bool)
        rewards = np.zeros(self.num_envs)
        done = np.zeros(self.num_envs, bool)
        for i in np.flatnonzero(active):
            obs, rew, term, _, _ = self.envs[i].step(actions[i])
            self._last_obs[i] = np.ravel(obs)
            rewards[i], done[i] = rew, term
        return self._last_obs.copy(), rewards, done
