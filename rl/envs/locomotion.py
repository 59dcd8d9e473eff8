"""Half-cheetah and ant locomotion tasks of the paper (Sec. 5.3), batched in one process.

Semantics of maml_rl's HalfCheetahEnvRand(Direc) / AntEnvRand(Direc) on rllab's
MujocoEnv (the design note ../shared/DESIGN.md, section 3):
  - frame skip 1; after each physics step the model is brought forward at the new
    state (rllab's `model.forward()`), so observations, com and contact forces
    describe the state the action led to;
  - speed = x velocity of the torso subtree's centre of mass (mj_subtreeVel);
  - reset: start pose + 0.01 N(0,1) on qpos, 0.1 N(0,1) on qvel; the task persists.
`LocomotionSim` steps many MjData of one model with raw (ctrl-range) actions and
computes observations, rewards and termination for all of them with numpy.
"""
import dataclasses

import mujoco
import numpy as np

from rl.envs.mujoco_models import init_qpos, load_model


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """One task distribution. Tasks are floats: a goal velocity ('vel') or a direction +-1 ('dir')."""
    name: str
    model: str
    kind: str          # 'vel' or 'dir'
    goal_high: float   # the original draws U[0, goal_high]; 'dir' is -1 below the midpoint

    def sample_tasks(self, n, rng):
        """`rng`: numpy Generator or RandomState (the latter reproduces the original's draws)."""
        u = rng.uniform(0.0, self.goal_high, size=n)
        return u if self.kind == "vel" else np.where(u < self.goal_high / 2, -1.0, 1.0)

    def paper_tasks(self, n, seed):
        """The original test scripts' tasks: np.random.seed(seed); np.random.uniform(0, high, n)."""
        return self.sample_tasks(n, np.random.RandomState(seed))


FAMILIES = {f.name: f for f in (
    TaskFamily("cheetah_vel", "half_cheetah", "vel", 2.0),
    TaskFamily("cheetah_dir", "half_cheetah", "dir", 2.0),
    TaskFamily("ant_vel", "ant", "vel", 3.0),
    TaskFamily("ant_dir", "ant", "dir", 3.0),
)}


def family(name):
    """The `TaskFamily` of a locomotion task name (FAMILIES)."""
    if name not in FAMILIES:
        raise ValueError(f"unknown locomotion task {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


class LocomotionSim:
    """`num_envs` copies of one task family's robot, stepped with raw ctrl-range actions."""

    def __init__(self, name, num_envs, seed=0):
        self.family = family(name)
        self.model = load_model(self.family.model)
        self.is_ant = self.family.model == "ant"
        self.terminates = self.is_ant  # a cheetah path always runs to the horizon
        self.num_envs = num_envs
        self.datas = [mujoco.MjData(self.model) for _ in range(num_envs)]
        self.torso = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "torso")
        self.init_qpos = init_qpos(self.model)
        self.init_qvel = np.zeros(self.model.nv)
        self.ctrl_low, self.ctrl_high = self.model.actuator_ctrlrange.T.copy()
        self.act_dim = self.model.nu
        nq, nv, nb = self.model.nq, self.model.nv, self.model.nbody
        self.obs_dim = nq + nv + 6 * nb + 9 + 3 if self.is_ant else nq - 1 + nv + 3
        # Euler models can skip the forward pass inside mj_step: the state was already
        # brought forward after the previous step (RK4 needs the full mj_step).
        self._euler = self.model.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
        self.tasks = np.zeros(num_envs)
        self.obs = np.zeros((num_envs, self.obs_dim))
        self.speed = np.zeros(num_envs)
        self.contact = np.zeros(num_envs)   # sum of clip(cfrc_ext, -1, 1)^2 (ant)
        self.z = np.zeros(num_envs)
        self.finite = np.ones(num_envs, bool)
        self.rng = np.random.default_rng(seed)

    def set_tasks(self, tasks):
        tasks = np.asarray(tasks, dtype=np.float64).reshape(-1)
        if tasks.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} tasks, got shape {np.shape(tasks)}")
        self.tasks = tasks.copy()

    def reset(self, indices=None):
        """Reset the given envs (default all) with rllab's start noise; returns all observations."""
        indices = range(self.num_envs) if indices is None else indices
        for i in indices:
            d = self.datas[i]
            mujoco.mj_resetData(self.model, d)
            d.qpos[:] = self.init_qpos + 0.01 * self.rng.standard_normal(self.model.nq)
            d.qvel[:] = self.init_qvel + 0.1 * self.rng.standard_normal(self.model.nv)
            self._forward(d)
            self._read(i, d)
        return self.obs

    def set_state(self, i, qpos, qvel):
        """Put env i in an exact state (tests, hand-set states)."""
        d = self.datas[i]
        d.qpos[:], d.qvel[:] = qpos, qvel
        self._forward(d)
        self._read(i, d)

    def step(self, ctrl, indices=None):
        """Apply raw actions `ctrl[E, nu]` (clipped to the ctrl range) to the given envs.

        Returns (obs [E, obs_dim], reward [E], done [E]) for all envs; rows not in
        `indices` keep their last values.
        """
        ctrl = np.clip(np.asarray(ctrl, dtype=np.float64), self.ctrl_low, self.ctrl_high)
        indices = range(self.num_envs) if indices is None else indices
        m = self.model
        for i in indices:
            d = self.datas[i]
            d.ctrl[:] = ctrl[i]
            if self._euler:
                mujoco.mj_step2(m, d)
            else:
                mujoco.mj_step(m, d)
            self._forward(d)
            self._read(i, d)
        return self.obs, self.reward(ctrl), self.done()

    def _forward(self, d):
        mujoco.mj_forward(self.model, d)
        mujoco.mj_subtreeVel(self.model, d)
        if self.is_ant:
            mujoco.mj_rnePostConstraint(self.model, d)  # fills cfrc_ext (contact forces)

    def _read(self, i, d):
        o, nq, nv, b = self.obs[i], self.model.nq, self.model.nv, self.torso
        self.speed[i] = d.subtree_linvel[b, 0]
        if self.is_ant:
            cfrc = np.clip(d.cfrc_ext, -1.0, 1.0).ravel()
            o[:nq], o[nq:nq + nv] = d.qpos, d.qvel
            o[nq + nv:nq + nv + cfrc.size] = cfrc
            o[-12:-3], o[-3:] = d.xmat[b], d.subtree_com[b]
            self.contact[i] = cfrc @ cfrc
            self.z[i] = d.qpos[2]
            self.finite[i] = np.isfinite(d.qpos).all() and np.isfinite(d.qvel).all()
        else:
            o[:nq - 1], o[nq - 1:nq - 1 + nv], o[-3:] = d.qpos[1:], d.qvel, d.subtree_com[b]

    def reward(self, ctrl):
        """Rewards of the last step for all envs, given the (clipped) raw actions."""
        fam = self.family
        forward = -np.abs(self.speed - self.tasks) if fam.kind == "vel" else self.tasks * self.speed
        if not self.is_ant:
            return forward - 0.5 * 0.1 * np.sum(ctrl ** 2, axis=1)
        scaling = (self.ctrl_high - self.ctrl_low) * 0.5
        ctrl_cost = 0.5 * 1e-2 * np.sum((ctrl / scaling) ** 2, axis=1)
        contact_cost = 0.5 * 1e-3 * self.contact
        alive_bonus = 1.0 if fam.kind == "vel" else 0.0  # the original's "make it happy, not suicidal"
        return forward + alive_bonus - ctrl_cost - contact_cost + 0.05

    def done(self):
        if not self.is_ant:
            return np.zeros(self.num_envs, bool)
        return ~(self.finite & (self.z >= 0.2) & (self.z <= 1.0))
