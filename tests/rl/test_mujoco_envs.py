"""Half-cheetah and ant tasks: models, observations, rewards, termination, tasks, vec envs."""
import os

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import rl  # noqa: F401  (registers the gymnasium ids)
from rl.envs import LOCOMOTION_IDS, make_vec_env, paper_test_tasks
from rl.envs.locomotion import FAMILIES, LocomotionSim
from rl.envs.locomotion_env import LocomotionEnv, LocomotionVecEnv
from rl.envs.mujoco_models import init_qpos, load_model
from rl.sampler import rollout

ALL_IDS = [i for v in LOCOMOTION_IDS.values() for i in (v, v.replace("-v0", "Oracle-v0"))]


def _rllab_model(shared_data, name):
    """The model the original ran (<repo>/../shared/data/rllab_models); missing = failure."""
    path = os.path.join(shared_data, "rllab_models", f"{name}.xml")
    assert os.path.exists(path), f"missing reference model {path}"
    return mujoco.MjModel.from_xml_path(path)


@pytest.mark.parametrize("name", ["half_cheetah", "ant"])
def test_built_models_match_rllab(shared_data, name):
    ours, ref = load_model(name), _rllab_model(shared_data, name)
    assert ours.opt.timestep == ref.opt.timestep
    assert ours.opt.integrator == ref.opt.integrator
    assert (ours.nq, ours.nv, ours.nu, ours.nbody) == (ref.nq, ref.nv, ref.nu, ref.nbody)
    for field in ("actuator_gear", "actuator_ctrlrange", "actuator_ctrllimited", "geom_solimp", "geom_solref",
                  "geom_friction", "geom_margin", "geom_size", "body_mass", "body_inertia", "body_ipos",
                  "dof_armature", "dof_damping", "jnt_stiffness", "jnt_range", "qpos0"):
        np.testing.assert_allclose(getattr(ours, field), getattr(ref, field), rtol=1e-12, err_msg=field)
    np.testing.assert_allclose(init_qpos(ours), init_qpos(ref))


def test_ant_start_pose_and_torque_range():
    model = load_model("ant")
    np.testing.assert_allclose(init_qpos(model)[:3], [0, 0, 0.55])
    torque = model.actuator_ctrlrange * model.actuator_gear[:, :1]
    np.testing.assert_allclose(torque, np.tile([-150.0, 150.0], (8, 1)))
    np.testing.assert_allclose(model.opt.timestep, 0.02)


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_make_all_ids(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    base = 125 if "Ant" in env_id else 20
    expected = base + (1 if "Oracle" in env_id else 0)
    assert obs.shape == env.observation_space.shape == (expected,)
    assert env.spec.max_episode_steps == 200
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, reward, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape))
    assert obs.shape == (expected,) and np.isfinite(reward)
    if "Oracle" in env_id:
        assert obs[-1] == env.unwrapped.get_task()


def _cheetah_obs_reference(d):
    return np.concatenate([d.qpos[1:], d.qvel, d.subtree_com[1]])


def test_cheetah_observation_is_qpos_qvel_com():
    sim = LocomotionSim("cheetah_vel", 1, seed=0)
    sim.reset()
    obs, _, _ = sim.step(np.full((1, 6), 0.3))
    d = sim.data(0)
    np.testing.assert_allclose(obs[0], _cheetah_obs_reference(d))
    # Whole-body centre of mass: the torso subtree is the whole robot.
    com = (sim.model.body_mass[:, None] * d.xipos).sum(0) / sim.model.body_mass.sum()
    np.testing.assert_allclose(obs[0, -3:], com)


def test_ant_observation_layout():
    sim = LocomotionSim("ant_vel", 1, seed=0)
    sim.reset()
    obs, _, _ = sim.step(np.full((1, 8), 50.0))
    d, b = sim.data(0), sim.torso
    expected = np.concatenate([d.qpos, d.qvel, np.clip(d.cfrc_ext, -1, 1).ravel(), d.xmat[b], d.subtree_com[b]])
    assert expected.size == 125
    np.testing.assert_allclose(obs[0], expected)


def test_cheetah_rewards_on_hand_set_state():
    """Translating the whole robot at 1.5 m/s: speed 1.5 exactly."""
    ctrl = np.array([[0.5, -0.2, 0.0, 1.0, 0.3, -0.4]])
    for name, task, forward in (("cheetah_vel", 0.7, -0.8), ("cheetah_dir", -1.0, -1.5)):
        sim = LocomotionSim(name, 1)
        sim.set_tasks([task])
        qvel = np.zeros(9)
        qvel[0] = 1.5
        sim.set_state(0, np.zeros(9), qvel)
        np.testing.assert_allclose(sim.speed[0], 1.5)
        np.testing.assert_allclose(sim.reward(ctrl), [forward - 0.05 * np.sum(ctrl ** 2)])


def test_ant_rewards_on_hand_set_state():
    """Ant in the air (no contacts) moving at 2 m/s in x."""
    ctrl = np.array([[150.0, -75.0, 0, 0, 30.0, 0, 0, -150.0]])
    ctrl_cost = 0.005 * np.sum((ctrl / 150.0) ** 2)
    for name, task, forward in (("ant_vel", 2.5, -0.5 + 1.0), ("ant_dir", 1.0, 2.0)):
        sim = LocomotionSim(name, 1)
        sim.set_tasks([task])
        qpos = init_qpos(sim.model)
        qpos[2] = 0.9
        qvel = np.zeros(14)
        qvel[0] = 2.0
        sim.set_state(0, qpos, qvel)
        assert sim.contact[0] == 0.0
        np.testing.assert_allclose(sim.speed[0], 2.0)
        np.testing.assert_allclose(sim.reward(ctrl), [forward - ctrl_cost + 0.05])


def test_ant_contact_cost_uses_clipped_external_forces():
    sim = LocomotionSim("ant_dir", 1, seed=0)
    sim.set_tasks([1.0])
    sim.reset()
    for _ in range(20):
        sim.step(np.zeros((1, 8)))
    d = sim.data(0)
    clipped = np.clip(d.cfrc_ext, -1, 1)
    assert np.abs(d.cfrc_ext).max() > 1  # resting on the floor, with forces the clip changes
    np.testing.assert_allclose(sim.contact[0], np.sum(clipped ** 2))
    np.testing.assert_allclose(sim.reward(np.zeros((1, 8))),
                               [sim.speed[0] - 5e-4 * np.sum(clipped ** 2) + 0.05])


def test_ant_termination_and_cheetah_never_terminates():
    sim = LocomotionSim("ant_vel", 1)
    qpos = init_qpos(sim.model)
    for z, done in ((0.15, True), (0.2, False), (0.5, False), (1.0, False), (1.05, True)):
        qpos[2] = z
        sim.set_state(0, qpos, np.zeros(14))
        assert sim.done()[0] == done, z
    qpos[2] = 0.5
    qvel = np.zeros(14)
    qvel[3] = np.nan
    sim.set_state(0, qpos, qvel)
    assert sim.done()[0]
    cheetah = LocomotionSim("cheetah_vel", 1)
    qpos = np.zeros(9)
    qpos[1] = -5.0
    cheetah.set_state(0, qpos, np.zeros(9))
    assert not cheetah.done()[0]


@pytest.mark.parametrize("name", ["cheetah_vel", "ant_dir"])
def test_physics_step_matches_mj_step_then_forward(name):
    """rllab: model.step() then model.forward(); ours may skip the duplicate forward pass."""
    sim = LocomotionSim(name, 1, seed=3)
    sim.reset()
    ref = mujoco.MjData(sim.model)
    ref.qpos[:], ref.qvel[:] = sim.data(0).qpos, sim.data(0).qvel
    rng = np.random.default_rng(0)
    for _ in range(30):
        ctrl = rng.uniform(sim.ctrl_low, sim.ctrl_high, size=(1, sim.act_dim))
        sim.step(ctrl)
        ref.ctrl[:] = ctrl[0]
        mujoco.mj_step(sim.model, ref)
        mujoco.mj_forward(sim.model, ref)
    np.testing.assert_allclose(sim.data(0).qpos, ref.qpos, atol=1e-9)
    np.testing.assert_allclose(sim.data(0).qvel, ref.qvel, atol=1e-7)


@pytest.mark.parametrize("name", ["cheetah_dir", "ant_vel"])
def test_reset_noise(name):
    sim = LocomotionSim(name, 400, seed=0)
    sim.reset()
    qpos = np.array([sim.data(i).qpos for i in range(sim.num_envs)]) - init_qpos(sim.model)
    qvel = np.array([sim.data(i).qvel for i in range(sim.num_envs)])
    np.testing.assert_allclose(qpos.std(), 0.01, rtol=0.05)
    np.testing.assert_allclose(qvel.std(), 0.1, rtol=0.05)
    assert abs(qpos.mean()) < 1e-3 and abs(qvel.mean()) < 1e-2


def test_goal_persists_across_resets():
    env = LocomotionEnv("cheetah_vel")
    env.reset(seed=1)
    task = env.get_task()
    assert 0 <= task <= 2
    env.step(np.zeros(6))
    env.reset()
    assert env.get_task() == task
    env.set_task(1.25)
    _, info = env.reset()
    assert info["task"] == 1.25 and env.sim.tasks[0] == 1.25
    env.reset(options={"task": 0.5})
    assert env.get_task() == 0.5
    wrapped = gym.make("MAML/AntDir-v0")
    wrapped.unwrapped.set_task(-1.0)
    wrapped.reset(seed=0)
    wrapped.reset()
    assert wrapped.unwrapped.get_task() == -1.0


def test_task_sampling_distributions():
    rng = np.random.default_rng(0)
    vel = FAMILIES["cheetah_vel"].sample_tasks(4000, rng)
    assert 0 <= vel.min() < 0.02 and 1.98 < vel.max() <= 2.0
    ant_vel = FAMILIES["ant_vel"].sample_tasks(4000, rng)
    assert 0 <= ant_vel.min() < 0.02 and 2.98 < ant_vel.max() <= 3.0
    for name in ("cheetah_dir", "ant_dir"):
        d = FAMILIES[name].sample_tasks(4000, rng)
        assert set(np.unique(d)) == {-1.0, 1.0}
        assert abs((d > 0).mean() - 0.5) < 0.03


def test_test_tasks_reproduce_the_original_scripts():
    np.testing.assert_array_equal(paper_test_tasks("cheetah_vel", 40, 1), np.random.RandomState(1).uniform(0, 2, 40))
    np.testing.assert_array_equal(paper_test_tasks("ant_vel", 40, 1), np.random.RandomState(1).uniform(0, 3, 40))
    u = np.random.RandomState(2).uniform(0, 3, 40)
    np.testing.assert_array_equal(paper_test_tasks("ant_dir", 40, 2), np.where(u < 1.5, -1.0, 1.0))
    u = np.random.RandomState(1).uniform(0, 2, 40)
    np.testing.assert_array_equal(paper_test_tasks("cheetah_dir", 40, 1), np.where(u < 1.0, -1.0, 1.0))


def test_vec_env_matches_gymnasium_env():
    tasks = np.array([0.3, 1.7])
    vec = LocomotionVecEnv("cheetah_vel", 2, oracle=True, seed=0)
    vec.set_tasks(tasks)
    obs_v = vec.reset()
    envs = [gym.make("MAML/HalfCheetahVelOracle-v0") for _ in tasks]
    for i, (env, task) in enumerate(zip(envs, tasks)):
        env.unwrapped.set_task(task)
        env.reset()
        env.unwrapped.sim.set_state(0, vec.sim.data(i).qpos, vec.sim.data(i).qvel)
    rng = np.random.default_rng(0)
    for _ in range(5):
        actions = rng.normal(size=(2, 6)) * 1.5
        obs_v, rew_v, done_v = vec.step(actions)
        res = [env.step(a) for env, a in zip(envs, actions)]
        np.testing.assert_allclose(obs_v, [r[0] for r in res])
        np.testing.assert_allclose(rew_v, [r[1] for r in res])
        np.testing.assert_array_equal(done_v, [r[2] for r in res])


def test_make_vec_env_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown env 'cheetah'"):
        make_vec_env("cheetah", 4)


def test_rollout_on_ant_masks_terminated_paths():
    """Random bang-bang torques (std e, clipped to the motors' range) make the ant's torso leave
    rllab's healthy height range [0.2, 1] within 200 steps in some paths (seed 0: 3 of 6): those
    paths end there, and the steps after the end are masked, with zero reward."""
    env = make_vec_env("ant_dir", 6, workers=0)
    act = lambda obs: (np.zeros((len(obs), 8)), np.ones((len(obs), 8)))
    batch = rollout(env, np.array([-1.0, 1.0]), num_trajs=3, horizon=200, act_fn=act, rng=np.random.default_rng(0))
    assert batch.observations.shape == (2, 3, 200, 125)
    lengths = batch.mask.sum(-1)
    assert np.all(lengths >= 1) and (lengths < 200).any() and (lengths == 200).any(), lengths
    np.testing.assert_array_equal(batch.mask, np.arange(200) < lengths[..., None])  # a prefix of each path
    np.testing.assert_array_equal(batch.rewards[batch.mask == 0], 0.0)
    assert np.all(batch.rewards[batch.mask == 1] != 0.0)


class _InProcessShards:
    """The in-process counterpart of a ShardedVecEnv: shard k's envs as a LocomotionVecEnv with
    the seed that shard's process gets (seed + 1000 k), each call split along the same bounds."""

    def __init__(self, name, bounds, seed):
        self.slices = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        self.envs = [LocomotionVecEnv(name, s.stop - s.start, seed=seed + 1000 * k) for k, s in enumerate(self.slices)]

    def set_tasks(self, tasks):
        for env, s in zip(self.envs, self.slices):
            env.set_tasks(tasks[s])

    def reset(self, mask=None):
        if mask is None:
            return np.concatenate([env.reset() for env in self.envs])
        return np.concatenate([env.reset(mask[s]) for env, s in zip(self.envs, self.slices)])

    def step(self, actions, active):
        parts = [env.step(actions[s], active[s]) for env, s in zip(self.envs, self.slices)]
        return [np.concatenate(p) for p in zip(*parts)]


def test_a_sharded_vec_env_worker_that_dies_is_one_line():
    """A worker process killed while the env is in use (out of memory, a signal to it alone):
    the next call is SamplerWorkerLost naming the worker, its process and exit code (an OSError,
    which rl.train reports in one line), not a pipe's EOFError traceback."""
    import signal

    from rl.envs.parallel import SamplerWorkerLost, ShardedVecEnv
    sharded = ShardedVecEnv("cheetah_vel", 2, workers=2, seed=7)
    try:
        sharded.set_tasks(np.array([0.5, 1.5]))
        sharded.reset()
        victim = sharded._procs[1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=10)
        with pytest.raises(SamplerWorkerLost, match=rf"sampler worker 1 \(process {victim.pid}\) ended unexpectedly "
                                                    r"\(exit code -9\); rerun the command to resume"):
            sharded.step(np.zeros((2, 6)))
    finally:
        sharded.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_sharded_vec_env_matches_in_process_env(workers):
    """Observations, rewards and ends of envs stepped in `workers` processes equal those of the
    same envs stepped here, task for task (with 2 workers: each shard's tasks reach its own
    process, and its envs are where the batch expects them)."""
    from rl.envs.parallel import ShardedVecEnv
    tasks = np.array([0.5, 1.5, -1.0])
    sharded = ShardedVecEnv("cheetah_vel", 3, workers=workers, seed=7)
    local = _InProcessShards("cheetah_vel", sharded.bounds, seed=7)
    try:
        for env in (local, sharded):
            env.set_tasks(tasks)
        np.testing.assert_allclose(sharded.reset(), local.reset())
        rng = np.random.default_rng(0)
        for _ in range(4):
            actions = rng.normal(size=(3, 6))
            active = np.array([True, False, True])
            for a, b in zip(sharded.step(actions, active), local.step(actions, active)):
                np.testing.assert_allclose(a[active], b[active])
        np.testing.assert_allclose(sharded.reset([False, True, False])[1], local.reset([False, True, False])[1])
    finally:
        sharded.close()


def test_two_workers_sample_a_batch():
    env = make_vec_env("cheetah_dir", 4, workers=2)
    try:
        act = lambda obs: (np.zeros((len(obs), 6)), np.zeros((len(obs), 6)))
        batch = rollout(env, np.array([-1.0, 1.0]), num_trajs=2, horizon=10, act_fn=act,
                        rng=np.random.default_rng(0), steps_per_task=20)
        assert batch.num_steps == 40 and np.isfinite(batch.rewards).all()
    finally:
        env.close()
