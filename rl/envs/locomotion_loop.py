"""The per-MjData Python loop that stepped `LocomotionSim` before MuJoCo's batch API.

Kept as the reference: tests check that the batched `LocomotionSim` reproduces it
bit for bit (observations, rewards, terminations, start noise, whole paths), and
benchmarks/rl_mujoco.py times it next to the batched one. It steps the plain model
(without the batch's extra sensors) and calls mj_subtreeVel and
mj_rnePostConstraint itself, so the tests also show that those sensors leave the
physics unchanged. Tasks, rewards and termination are `LocomotionSim`'s.
"""
import mujoco
import numpy as np

from rl.envs.locomotion import LocomotionSim
from rl.envs.mujoco_models import load_model


class LoopLocomotionSim(LocomotionSim):
    """`LocomotionSim` on one MjData per env, stepped one env at a time in Python
    (`nthread` is ignored)."""

    def _load_model(self):
        return load_model(self.family.model)

    def _start_physics(self, nthread):
        self.datas = [mujoco.MjData(self.model) for _ in range(self.num_envs)]
        # Euler models can skip the forward pass inside mj_step: the state was already
        # brought forward after the previous step (RK4 needs the full mj_step).
        self._euler = self.model.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER

    def data(self, i):
        return self.datas[i]

    def reset(self, indices=None):
        indices = range(self.num_envs) if indices is None else indices
        for i in indices:
            d = self.datas[i]
            mujoco.mj_resetData(self.model, d)
            d.qpos[:] = self.init_qpos + 0.01 * self.rng.standard_normal(self.model.nq)
            d.qvel[:] = self.init_qvel + 0.1 * self.rng.standard_normal(self.model.nv)
            self._forward(d)
            self._read_one(i, d)
        return self.obs

    def set_state(self, i, qpos, qvel):
        d = self.datas[i]
        d.qpos[:], d.qvel[:] = qpos, qvel
        self._forward(d)
        self._read_one(i, d)

    def step(self, ctrl, indices=None):
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
            self._read_one(i, d)
        return self.obs, self.reward(ctrl), self.done()

    def _forward(self, d):
        mujoco.mj_forward(self.model, d)
        mujoco.mj_subtreeVel(self.model, d)
        if self.is_ant:
            mujoco.mj_rnePostConstraint(self.model, d)  # fills cfrc_ext (contact forces)

    def _read_one(self, i, d):
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
