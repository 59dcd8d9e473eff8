"""The locomotion tasks as a gymnasium env (one robot) and as a batched vec env (many robots).

Both are thin views of `LocomotionSim`. The gymnasium env takes raw ctrl-range
actions (rllab's normalisation is the `NormalizeAction` wrapper, as for the
point task); the vec env takes the policy's [-1, 1] actions and normalises them
itself, and implements the interface `rl.sampler.rollout` needs.
"""
import gymnasium as gym
import numpy as np

from rl.envs.locomotion import LocomotionSim, family


class LocomotionEnv(gym.Env):
    """One half-cheetah or ant with a task (goal velocity or direction) that persists
    across resets, like the point env: `set_task`, `reset(options={'task': t})`;
    a reset without a task draws one only if none was ever set."""

    metadata = {"render_modes": []}

    def __init__(self, name, task=None):
        self._sim = LocomotionSim(name, 1)
        self.family = self._sim.family
        high = np.full(self._sim.obs_dim, np.inf)
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float64)
        self.action_space = gym.spaces.Box(self._sim.ctrl_low, self._sim.ctrl_high, dtype=np.float64)
        self._task = None
        if task is not None:
            self.set_task(task)

    @property
    def sim(self):
        return self._sim

    def sample_tasks(self, n, rng):
        return self.family.sample_tasks(n, rng)

    def set_task(self, task):
        self._task = float(np.asarray(task).reshape(()))
        self._sim.set_tasks([self._task])

    def get_task(self):
        return self._task

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self._sim.rng = np.random.default_rng(seed)
        if options and options.get("task") is not None:
            self.set_task(options["task"])
        elif self._task is None:
            self.set_task(self.sample_tasks(1, self.np_random)[0])
        obs = self._sim.reset()
        return obs[0].copy(), {"task": self._task}

    def step(self, action):
        ctrl = np.asarray(action, dtype=np.float64).reshape(1, -1)
        obs, reward, done = self._sim.step(ctrl)
        info = {"task": self._task, "speed": float(self._sim.speed[0])}
        return obs[0].copy(), float(reward[0]), bool(done[0]), False, info


class LocomotionVecEnv:
    """`num_envs` robots of task family `name` stepped in this process, on `nthread`
    physics threads (`LocomotionSim`; `sim_class=LoopLocomotionSim` is the old
    one-env-at-a-time loop, for tests and benchmarks).

    Actions are the policy's: a -> lb + (a + 1)(ub - lb)/2, clipped to [lb, ub]
    (rllab's `normalize`). With `oracle`, the task is appended to the observation.
    """

    def __init__(self, name, num_envs, oracle=False, seed=0, nthread=None, sim_class=LocomotionSim):
        self.sim = sim_class(name, num_envs, seed=seed, nthread=nthread)
        self.family = family(name)
        self.num_envs = num_envs
        self.oracle = oracle
        self.obs_dim = self.sim.obs_dim + (1 if oracle else 0)
        self.act_dim = self.sim.act_dim
        self.terminates = self.sim.terminates

    def sample_tasks(self, n, rng):
        return self.family.sample_tasks(n, rng)

    def set_tasks(self, tasks):
        self.sim.set_tasks(tasks)

    def _obs(self):
        if self.oracle:
            return np.concatenate([self.sim.obs, self.sim.tasks[:, None]], axis=1)
        return self.sim.obs.copy()

    def reset(self, mask=None):
        self.sim.reset(None if mask is None else np.flatnonzero(mask))
        return self._obs()

    def rng_state(self):
        """State of the start-noise RNG (one entry per process), saved with checkpoints."""
        return [self.sim.rng.bit_generator.state]

    def set_rng_state(self, states):
        (self.sim.rng.bit_generator.state,) = states

    def step(self, actions, active=None):
        lb, ub = self.sim.ctrl_low, self.sim.ctrl_high
        ctrl = lb + (np.asarray(actions, dtype=np.float64) + 1.0) * 0.5 * (ub - lb)
        _, reward, done = self.sim.step(ctrl, None if active is None else np.flatnonzero(active))
        return self._obs(), reward, done

    def close(self):
        pass
