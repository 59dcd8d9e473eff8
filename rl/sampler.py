"""Batched trajectory sampling: many tasks x many trajectories stepped at once.

Every env in the batch runs one trajectory of at most `horizon` steps; env
e = task * n_traj + j. Each time step makes a single policy call for the whole
batch (`act_fn(obs[E, d]) -> mean[E, a], log_std[E, a]`), so a MuJoCo vector env
(200-step horizon, tens of envs) plugs into the same loop. Paths end when the env
reports termination or at the horizon; later steps are masked out.
"""
import dataclasses

import numpy as np


@dataclasses.dataclass
class Batch:
    """Padded trajectories, leading axes [task, trajectory, time]."""
    observations: np.ndarray  # [T, N, H, obs_dim]
    actions: np.ndarray       # [T, N, H, act_dim] (raw, unclipped Gaussian samples)
    rewards: np.ndarray       # [T, N, H]
    mask: np.ndarray          # [T, N, H] 1.0 where the step happened
    means: np.ndarray         # [T, N, H, act_dim] sampling policy's mean
    log_stds: np.ndarray      # [T, N, H, act_dim] sampling policy's log-std

    @property
    def num_steps(self):
        return int(self.mask.sum())

    def undiscounted_returns(self):
        """[T, N] sum of rewards of every path."""
        return (self.rewards * self.mask).sum(-1)

    def flat(self):
        """[T, N*H, ...] views for the losses."""
        t, n, h = self.mask.shape
        return {k: getattr(self, k).reshape((t, n * h) + getattr(self, k).shape[3:])
                for k in ("observations", "actions", "rewards", "mask", "means", "log_stds")}


def rollout(vec_env, tasks, n_traj, horizon, act_fn, rng):
    """Sample `n_traj` trajectories for each of `tasks` (len T).

    `vec_env.num_envs` must be T * n_traj. Actions are mean + std * N(0, 1)
    drawn from `rng`, unclipped (the env wrapper clips what it executes).
    """
    tasks = np.asarray(tasks)
    n_tasks = len(tasks)
    n_envs = n_tasks * n_traj
    if vec_env.num_envs != n_envs:
        raise ValueError(f"vec env has {vec_env.num_envs} envs, need {n_tasks} tasks x {n_traj} trajectories")
    vec_env.set_tasks(np.repeat(tasks, n_traj, axis=0))
    obs = vec_env.reset()
    obs_dim, act_dim = obs.shape[1], vec_env.act_dim
    out = {
        "observations": np.zeros((n_envs, horizon, obs_dim)),
        "actions": np.zeros((n_envs, horizon, act_dim)),
        "rewards": np.zeros((n_envs, horizon)),
        "mask": np.zeros((n_envs, horizon)),
        "means": np.zeros((n_envs, horizon, act_dim)),
        "log_stds": np.zeros((n_envs, horizon, act_dim)),
    }
    active = np.ones(n_envs, bool)
    for t in range(horizon):
        mean, log_std = act_fn(obs)
        actions = mean + np.exp(log_std) * rng.standard_normal(mean.shape)
        next_obs, rewards, done = vec_env.step(actions, active)
        out["observations"][:, t] = obs
        out["actions"][:, t] = actions
        out["rewards"][:, t] = rewards * active
        out["mask"][:, t] = active
        out["means"][:, t] = mean
        out["log_stds"][:, t] = log_std
        active = active & ~np.asarray(done, bool)
        obs = next_obs
        if not active.any():
            break
    shape = (n_tasks, n_traj, horizon)
    return Batch(**{k: v.reshape(shape + v.shape[2:]) for k, v in out.items()})
