"""The batched locomotion sim (mujoco.batch) against the per-MjData loop it replaced.

Equality is bit-exact: MuJoCo's batch runs the same C functions on the same inputs as
the loop (one MjData per env, any thread count), the extra sensors only read the
state, and the numpy part sums the contact cost as the loop's BLAS dot product does.
"""
import numpy as np
import pytest

from rl.envs import make_vec_env
from rl.envs import locomotion
from rl.envs.locomotion import LocomotionSim
from rl.envs.locomotion_env import LocomotionVecEnv
from rl.envs.locomotion_loop import LoopLocomotionSim
from rl.sampler import rollout

STATE_FIELDS = ("qpos", "qvel", "ctrl", "qacc_warmstart", "time")


def _assert_same_sims(new, old, where):
    np.testing.assert_array_equal(new.obs, old.obs, err_msg=where)
    for field in ("speed", "contact", "z", "finite"):
        np.testing.assert_array_equal(getattr(new, field), getattr(old, field), err_msg=f"{where}: {field}")
    assert new.rng.bit_generator.state == old.rng.bit_generator.state, where


def _drive(name, num_envs, steps, seed, nthread):
    """Step a batched and a loop sim from the same seed with the same random actions,
    random subsets of active envs, partial resets and a hand-set state; compare after
    every call. Returns how many (env, step) pairs reported termination."""
    new = LocomotionSim(name, num_envs, seed=seed, nthread=nthread)
    old = LoopLocomotionSim(name, num_envs, seed=seed)
    rng = np.random.default_rng(seed + 100)
    tasks = new.family.sample_tasks(num_envs, rng)
    new.set_tasks(tasks)
    old.set_tasks(tasks)
    np.testing.assert_array_equal(new.reset(), old.reset())
    dones = 0
    for t in range(steps):
        # actions up to twice the ctrl range (clipped by the sims): the ant flips over
        ctrl = rng.uniform(2 * new.ctrl_low, 2 * new.ctrl_high, size=(num_envs, new.act_dim))
        active = None if t % 3 == 0 else np.flatnonzero(rng.random(num_envs) < 0.7)
        out_new, out_old = new.step(ctrl, active), old.step(ctrl, active)
        for a, b in zip(out_new, out_old):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} step {t}")
        dones += int(out_new[2].sum())
        if t % 7 == 6:
            subset = np.flatnonzero(rng.random(num_envs) < 0.4)
            np.testing.assert_array_equal(new.reset(subset), old.reset(subset), err_msg=f"reset at {t}")
        if t == steps // 2:
            i = int(rng.integers(num_envs))
            qpos, qvel = old.data(i).qpos + 0.05, old.data(i).qvel * 0.5
            new.set_state(i, qpos, qvel)
            old.set_state(i, qpos, qvel)
        _assert_same_sims(new, old, f"{name} after step {t}")
    for i in range(num_envs):
        for field in STATE_FIELDS:
            np.testing.assert_array_equal(getattr(new.data(i), field), getattr(old.data(i), field), err_msg=field)
    return dones


@pytest.mark.parametrize("name,nthread", [("cheetah_dir", 2), ("cheetah_vel", 1), ("ant_vel", 2), ("ant_dir", 1)])
def test_batched_sim_equals_the_loop_bit_for_bit(name, nthread):
    dones = _drive(name, num_envs=9, steps=120, seed=4, nthread=nthread)
    if name.startswith("ant"):
        assert dones > 0, "no ant terminated: the test does not cover termination"


def test_the_comparison_sees_missing_contact_forces(monkeypatch):
    """Without the sensor that makes mj_forward run mj_rnePostConstraint, cfrc_ext stays 0
    in the batch and the comparison fails: it is not vacuous."""
    monkeypatch.setitem(locomotion._SENSORS, "ant", locomotion._SENSORS["ant"][:1])
    with pytest.raises(AssertionError):
        _drive("ant_vel", num_envs=3, steps=10, seed=0, nthread=1)


def _noisy_policy(act_dim):
    """Means that depend on the observation, and wide noise (std e): ants flip within 60 steps."""
    return lambda obs: (np.tanh(obs[:, :act_dim]), np.ones((len(obs), act_dim)))


@pytest.mark.parametrize("name,oracle", [("cheetah_vel", False), ("ant_dir", True), ("ant_vel", False)])
def test_rollout_paths_equal_the_loops(name, oracle):
    """Whole sampler batches, rllab's step budget included (terminated ant paths restart:
    partial active and reset masks), are identical to those of the loop env."""
    tasks, num_trajs, horizon = np.array([0.5, 1.0, 1.5]) if "vel" in name else np.array([-1.0, 1.0, 1.0]), 3, 60
    envs = (make_vec_env(name, len(tasks) * num_trajs, oracle=oracle, seed=11),
            LocomotionVecEnv(name, len(tasks) * num_trajs, oracle=oracle, seed=11, sim_class=LoopLocomotionSim))
    batches = [rollout(env, tasks, num_trajs, horizon, _noisy_policy(env.act_dim), np.random.default_rng(5),
                       steps_per_task=num_trajs * horizon) for env in envs]
    for key in ("observations", "actions", "rewards", "mask", "means", "log_stds"):
        np.testing.assert_array_equal(getattr(batches[0], key), getattr(batches[1], key), err_msg=key)
    if name.startswith("ant"):
        lengths = batches[0].mask.sum(-1)[batches[0].path_mask]
        assert (lengths < horizon).any(), "no ant path terminated early"
        assert batches[0].mask.shape[1] > num_trajs, "no path restarted in a slot"


def test_bad_indices_are_one_line_errors():
    sim = LocomotionSim("cheetah_vel", 4, seed=0)
    state = sim.rng.bit_generator.state
    with pytest.raises(ValueError, match=r"sorted, unique and in \[0, 4\); got \[2, 1\]"):
        sim.reset([2, 1])
    assert sim.rng.bit_generator.state == state  # no start noise drawn for a refused reset
    with pytest.raises(ValueError, match=r"got \[0, 4\]"):
        sim.step(np.zeros((4, 6)), [0, 4])
