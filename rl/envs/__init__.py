"""Task environments: gymnasium registration and the vectorised-env factory."""
import gymnasium as gym
import numpy as np

from rl.envs.point import Point2DEnv, PointVecEnv, sample_goals
from rl.envs.wrappers import NormalizeAction, OracleObservation

POINT_HORIZON = 100
LOCOMOTION_HORIZON = 200
LOCOMOTION_IDS = {"cheetah_vel": "MAML/HalfCheetahVel-v0", "cheetah_dir": "MAML/HalfCheetahDir-v0",
                  "ant_vel": "MAML/AntVel-v0", "ant_dir": "MAML/AntDir-v0"}


def make_point(goal=None):
    """The point task as the policy sees it: rllab-normalised actions."""
    return NormalizeAction(Point2DEnv(goal=goal))


def make_point_oracle(goal=None):
    """The point task with the goal appended to the observation (the oracle's env)."""
    return OracleObservation(make_point(goal=goal))


def make_locomotion(name, task=None, oracle=False):
    """A locomotion task as the policy sees it: rllab-normalised actions (+ task if oracle)."""
    from rl.envs.locomotion_env import LocomotionEnv
    env = NormalizeAction(LocomotionEnv(name, task=task))
    return OracleObservation(env) if oracle else env


def register_envs():
    """Register the gymnasium ids MAML/Point2D-v0, MAML/Point2DOracle-v0 and the locomotion
    tasks' (LOCOMOTION_IDS, and their Oracle-v0 variants)."""
    for env_id, entry in (("MAML/Point2D-v0", make_point), ("MAML/Point2DOracle-v0", make_point_oracle)):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, max_episode_steps=POINT_HORIZON,
                         disable_env_checker=True)
    for name, env_id in LOCOMOTION_IDS.items():
        for oracle, full_id in ((False, env_id), (True, env_id.replace("-v0", "Oracle-v0"))):
            if full_id not in gym.registry:
                gym.register(id=full_id, entry_point=make_locomotion, max_episode_steps=LOCOMOTION_HORIZON,
                             disable_env_checker=True, kwargs={"name": name, "oracle": oracle})


def make_vec_env(name, num_envs, oracle=False, workers=0, seed=0):
    """Batch of `num_envs` envs for the sampler. 'point' uses the numpy version; the
    locomotion tasks ('cheetah_vel', 'cheetah_dir', 'ant_vel', 'ant_dir') a batched MuJoCo
    env, in this process on MuJoCo's batch threads (workers 0 or 1; every CPU), or split
    over `workers` processes of one physics thread each (benchmarks/rl_mujoco.py)."""
    if name == "point":
        return PointVecEnv(num_envs, oracle=oracle)
    if name in LOCOMOTION_IDS:
        if workers > 1:
            from rl.envs.parallel import ShardedVecEnv
            return ShardedVecEnv(name, num_envs, workers=workers, oracle=oracle, seed=seed)
        from rl.envs.locomotion_env import LocomotionVecEnv
        return LocomotionVecEnv(name, num_envs, oracle=oracle, seed=seed)
    raise ValueError(f"unknown env {name!r}; known: {', '.join(['point', *LOCOMOTION_IDS])}")


def paper_test_tasks(name, num_tasks, seed):
    """The original test scripts' tasks for env `name` (numpy RandomState(seed) draws)."""
    if name == "point":
        return sample_goals(num_tasks, np.random.RandomState(seed))
    from rl.envs.locomotion import family
    return family(name).paper_tasks(num_tasks, seed)


__all__ = ["Point2DEnv", "PointVecEnv", "NormalizeAction", "OracleObservation",
           "sample_goals", "make_point", "make_point_oracle", "make_locomotion", "make_vec_env",
           "register_envs", "paper_test_tasks", "POINT_HORIZON", "LOCOMOTION_HORIZON",
           "LOCOMOTION_IDS"]
