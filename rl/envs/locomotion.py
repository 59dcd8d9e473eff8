"""Half-cheetah and ant locomotion tasks of the paper (Sec. 5.3), batched in one process.

Semantics of maml_rl's HalfCheetahEnvRand(Direc) / AntEnvRand(Direc) on rllab's
MujocoEnv (the design note ../shared/DESIGN.md, section 3):
  - frame skip 1; after each physics step the model is brought forward at the new
    state (rllab's `model.forward()`), so observations, com and contact forces
    describe the state the action led to;
  - speed = x velocity of the torso subtree's centre of mass (mj_subtreeVel);
  - reset: start pose + 0.01 N(0,1) on qpos, 0.1 N(0,1) on qvel; the task persists.
`LocomotionSim` steps many copies of one model with raw (ctrl-range) actions on
MuJoCo's batch API and computes observations, rewards and termination for all of
them at once with numpy.
"""
import dataclasses
import os

import mujoco
import mujoco.batch
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


# Sensors added to the models so that mj_forward computes what observations and rewards read:
# subtreelinvel makes it run mj_subtreeVel (subtree_linvel: the speed), framelinacc makes it run
# mj_rnePostConstraint (cfrc_ext: the ant's contact forces). Their own values are not used.
_SENSORS = {
    "half_cheetah": (("subtreelinvel", {"body": "torso"}),),
    "ant": (("subtreelinvel", {"body": "torso"}), ("framelinacc", {"objtype": "body", "objname": "torso"})),
}
_NONE = mujoco.mjtStage.mjSTAGE_NONE
_BAD_STATE = [int(mujoco.mjtWarning.mjWARN_BADQPOS), int(mujoco.mjtWarning.mjWARN_BADQVEL)]


def available_cpus():
    """CPUs this process may run on (the affinity mask; os.cpu_count() where there is none)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class LocomotionSim:
    """`num_envs` copies of one task family's robot, stepped with raw ctrl-range actions.

    The physics is one `mujoco.batch.Batch` (persistent: an MjData per env). Threaded:
    every `step`, `reset` and `set_state` is one batch call on the envs it concerns,
    which MuJoCo's C code splits over `nthread` threads (default `available_cpus()`,
    the caller's included) with the GIL released. A step call runs mj_step and then the
    forward pass at the new state (rllab's `model.forward()`; `forward_stage`); the
    model's sensors (_SENSORS) make it run mj_subtreeVel and, for the ant,
    mj_rnePostConstraint. Not threaded: observations, rewards and termination, computed
    for those envs at once with numpy on the calling thread, and the policy.
    The results are bit-identical to the per-MjData loop this replaced
    (`rl.envs.locomotion_loop`, tests/rl/test_locomotion_batch.py), except for states
    MuJoCo finds bad (NaN, infinite, > 1e10), which the batch resets (see `_read`).
    """

    def __init__(self, name, num_envs, seed=0, nthread=None):
        self.family = family(name)
        self.is_ant = self.family.model == "ant"
        self.terminates = self.is_ant  # a cheetah path always runs to the horizon
        self.num_envs = num_envs
        self.model = self._load_model()
        self.torso = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, "torso")
        self.init_qpos = init_qpos(self.model)
        self.init_qvel = np.zeros(self.model.nv)
        self.ctrl_low, self.ctrl_high = self.model.actuator_ctrlrange.T.copy()
        self.act_dim = self.model.nu
        nq, nv, nb = self.model.nq, self.model.nv, self.model.nbody
        self.obs_dim = nq + nv + 6 * nb + 9 + 3 if self.is_ant else nq - 1 + nv + 3
        self.tasks = np.zeros(num_envs)
        self.obs = np.zeros((num_envs, self.obs_dim))
        self.speed = np.zeros(num_envs)
        self.contact = np.zeros(num_envs)   # sum of clip(cfrc_ext, -1, 1)^2 (ant)
        self.z = np.zeros(num_envs)
        self.finite = np.ones(num_envs, bool)
        self.rng = np.random.default_rng(seed)
        self._start_physics(available_cpus() if nthread is None else nthread)

    def _load_model(self):
        return load_model(self.family.model, sensors=_SENSORS[self.family.model])

    def _start_physics(self, nthread):
        self.batch = mujoco.batch.Batch(self.model, self.num_envs, nthread=nthread, persistent=True)
        # The forward pass at the new state: the ant's contact forces need all of mj_forward
        # (with the controls just applied, as rllab's model.forward()); the cheetah reads only
        # positions and velocities, which the position and velocity stages compute exactly as
        # mj_forward does, and its next (Euler) step continues from them with mj_step2, as the
        # loop's mj_forward + mj_step2 did.
        self.forward_stage = mujoco.mjtStage.mjSTAGE_ACC if self.is_ant else mujoco.mjtStage.mjSTAGE_VEL
        bind = self.batch.bind
        self._qpos, self._qvel, self._ctrl = bind("qpos"), bind("qvel"), bind("ctrl")
        self._com, self._linvel = bind("subtree_com"), bind("subtree_linvel")
        if self.is_ant:
            self._xmat, self._cfrc = bind("xmat"), bind("cfrc_ext")
        self._bad_seen = np.zeros(self.num_envs, np.int64)  # bad-state warnings counted so far

    def data(self, i):
        """A copy of env i's MjData with the derived fields of its last call (tests); after a
        cheetah step only the position- and velocity-dependent ones are current."""
        return self.batch.get_data(i)

    def set_tasks(self, tasks):
        tasks = np.asarray(tasks, dtype=np.float64).reshape(-1)
        if tasks.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} tasks, got shape {np.shape(tasks)}")
        self.tasks = tasks.copy()

    def reset(self, indices=None):
        """Reset the given envs (default all; sorted, unique) with rllab's start noise;
        returns all observations."""
        ids = self._ids(indices)
        rows = slice(None) if ids is None else ids
        self.batch.reset(ids, stage=_NONE)  # mj_resetData (warning counters too)
        self._bad_seen[rows] = 0
        nq = self.model.nq
        # One draw of nq + nv numbers per env, in env order: the same numbers as drawing
        # qpos's then qvel's noise env by env.
        noise = self.rng.standard_normal((self.num_envs if ids is None else len(ids), nq + self.model.nv))
        self._qpos[rows] = self.init_qpos + 0.01 * noise[:, :nq]
        self._qvel[rows] = self.init_qvel + 0.1 * noise[:, nq:]
        self.batch.forward(ids)
        self._read(rows)
        return self.obs

    def set_state(self, i, qpos, qvel):
        """Put env i in an exact state (tests, hand-set states)."""
        self._qpos[i], self._qvel[i] = qpos, qvel
        ids = np.array([i])
        self.batch.forward(ids)
        self._read(ids)

    def step(self, ctrl, indices=None):
        """Apply raw actions `ctrl[E, nu]` (clipped to the ctrl range) to the given envs
        (default all; sorted, unique).

        Returns (obs [E, obs_dim], reward [E], done [E]) for all envs; rows not in
        `indices` keep their last values.
        """
        ctrl = np.clip(np.asarray(ctrl, dtype=np.float64), self.ctrl_low, self.ctrl_high)
        ids = self._ids(indices)
        rows = slice(None) if ids is None else ids
        self._ctrl[rows] = ctrl[rows]
        self.batch.step(ids, 1, self.forward_stage)
        self._read(rows)
        return self.obs, self.reward(ctrl), self.done()

    def _ids(self, indices):
        """`indices` as the batch takes them (None: all envs); a one-line ValueError unless
        they are sorted, unique env indices."""
        if indices is None:
            return None
        ids = np.asarray(indices).reshape(-1)
        if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0 or ids.max() >= self.num_envs
                         or (np.diff(ids) <= 0).any()):
            raise ValueError(f"env indices must be sorted, unique and in [0, {self.num_envs}); got {ids.tolist()}")
        return ids.astype(np.int32)

    def _read(self, rows):
        qpos, qvel, b = self._qpos[rows], self._qvel[rows], self.torso
        self.speed[rows] = self._linvel[rows, b, 0]
        com = self._com[rows, b]
        if self.is_ant:
            cfrc = np.clip(self._cfrc[rows], -1.0, 1.0).reshape(len(qpos), 6 * self.model.nbody)
            self.obs[rows] = np.concatenate([qpos, qvel, cfrc, self._xmat[rows, b], com], axis=1)
            # One dot product per env, summed as BLAS sums `cfrc @ cfrc` (np.einsum rounds otherwise).
            self.contact[rows] = np.matmul(cfrc[:, None, :], cfrc[:, :, None])[:, 0, 0]
            self.z[rows] = qpos[:, 2]
            # MuJoCo's batch checks the state (mj_checkPos / mj_checkVel) in its forward passes
            # too, unlike mj_forward: a NaN, infinite or > 1e10 qpos or qvel is reset to the
            # model's defaults with a warning, where the loop's forward pass kept it and reported
            # it as not finite. Count those resets as not finite.
            bad = self.batch.warning[rows][:, _BAD_STATE, 1].sum(1)
            reset_by_mujoco, self._bad_seen[rows] = bad > self._bad_seen[rows], bad
            self.finite[rows] = np.isfinite(qpos).all(1) & np.isfinite(qvel).all(1) & ~reset_by_mujoco
        else:
            self.obs[rows] = np.concatenate([qpos[:, 1:], qvel, com], axis=1)

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
