"""2D point navigation (the paper's Sec. 5.3 task), as in maml_rl's PointEnvRandGoal.

The raw environment takes actions in the box [-0.1, 0.1]^2 and adds them to the
position unclipped, exactly like the original; the rllab action normalisation
(policy acts in [-1, 1], clipped onto the box) lives in `rl.envs.wrappers`.
`PointVecEnv` is the same task vectorised over many envs in numpy, with the
normalisation built in, for fast sampling.
"""
import gymnasium as gym
import numpy as np

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
ACTION_BOUND = 0.1
SUCCESS_TOL = 0.01


def sample_goals(n, rng):
    """Goals U[-0.5, 0.5]^2, shape [n, 2] (the original `sample_goals`)."""
    return rng.uniform(GOAL_LOW, GOAL_HIGH, size=(n, 2))


def _reward_done(state, goal):
    delta = state - goal
    reward = -np.sqrt(np.sum(delta ** 2, axis=-1))
    done = np.all(np.abs(delta) < SUCCESS_TOL, axis=-1)
    return reward, done


class Point2DEnv(gym.Env):
    """Point mass at (0, 0) that must reach a goal; reward = -distance to goal.

    The goal is the task. It persists across resets: `set_task` (or
    `reset(options={'task': goal})`) changes it; a reset without a task keeps the
    current goal and only draws one (from the env's seeded generator) if none was
    ever set, like the original's `reset(reset_args=None)`.
    """

    metadata = {"render_modes": []}

    def __init__(self, goal=None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)
        self.action_space = gym.spaces.Box(-ACTION_BOUND, ACTION_BOUND, shape=(2,), dtype=np.float64)
        self._goal = None if goal is None else np.asarray(goal, dtype=np.float64)
        self._state = np.zeros(2)

    def sample_tasks(self, n, rng):
        return sample_goals(n, rng)

    def set_task(self, task):
        self._goal = np.asarray(task, dtype=np.float64).reshape(2)

    def get_task(self):
        return None if self._goal is None else self._goal.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options and options.get("task") is not None:
            self.set_task(options["task"])
        elif self._goal is None:
            self.set_task(sample_goals(1, self.np_random)[0])
        self._state = np.zeros(2)
        return self._state.copy(), {"goal": self._goal.copy()}

    def step(self, action):
        self._state = self._state + np.asarray(action, dtype=np.float64)
        reward, done = _reward_done(self._state, self._goal)
        return self._state.copy(), float(reward), bool(done), False, {"goal": self._goal.copy()}


class PointVecEnv:
    """`num_envs` normalised point envs stepped together in numpy.

    Implements the vectorised-env interface used by `rl.sampler`:
    `set_tasks`, `reset`, `step(actions, active)`. Actions are the policy's
    [-1, 1] actions; they are mapped onto [-0.1, 0.1] and clipped there
    (rllab's `normalize`), so s += clip(0.1 a, -0.1, 0.1).
    """

    def __init__(self, num_envs, oracle=False):
        self.num_envs = num_envs
        self.oracle = oracle
        self.obs_dim = 4 if oracle else 2
        self.act_dim = 2
        self._goals = np.zeros((num_envs, 2))
        self._state = np.zeros((num_envs, 2))

    def sample_tasks(self, n, rng):
        return sample_goals(n, rng)

    def set_tasks(self, tasks):
        tasks = np.asarray(tasks, dtype=np.float64)
        if tasks.shape != (self.num_envs, 2):
            raise ValueError(f"expected tasks of shape {(self.num_envs, 2)}, got {tasks.shape}")
        self._goals = tasks.copy()

    def _obs(self):
        if self.oracle:
            return np.concatenate([self._state, self._goals], axis=1)
        return self._state.copy()

    def reset(self, mask=None):
        """Start new paths in all envs (or only where `mask`); returns all observations."""
        if mask is None:
            self._state = np.zeros((self.num_envs, 2))
        else:
            self._state[np.asarray(mask, bool)] = 0.0
        return self._obs()

    def step(self, actions, active=None):
        lb, ub = -ACTION_BOUND, ACTION_BOUND
        scaled = np.clip(lb + (np.asarray(actions) + 1.0) * 0.5 * (ub - lb), lb, ub)
        if active is not None:
            scaled = scaled * np.asarray(active, dtype=np.float64)[:, None]
        self._state = self._state + scaled
        reward, done = _reward_done(self._state, self._goals)
        return self._obs(), reward, done
