"""Task environments: gymnasium registration and the vectorised-env factory."""
import gymnasium as gym

from rl.envs.point import Point2DEnv, PointVecEnv, sample_goals
from rl.envs.vec import GymnasiumVecEnv
from rl.envs.wrappers import NormalizeAction, OracleObservation

POINT_HORIZON = 100
ENV_IDS = {"point": "MAML/Point2D-v0", "point_oracle": "MAML/Point2DOracle-v0"}


def make_point(goal=None):
    """The point task as the policy sees it: rllab-normalised actions."""
    return NormalizeAction(Point2DEnv(goal=goal))


def make_point_oracle(goal=None):
    return OracleObservation(make_point(goal=goal))


def register_envs():
    for env_id, entry in (("MAML/Point2D-v0", make_point), ("MAML/Point2DOracle-v0", make_point_oracle)):
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry, max_episode_steps=POINT_HORIZON,
                         disable_env_checker=True)


def make_vec_env(name, num_envs, oracle=False):
    """Batch of `num_envs` envs for the sampler. 'point' uses the numpy version;
    any registered gymnasium id goes through `GymnasiumVecEnv`."""
    if name == "point":
        return PointVecEnv(num_envs, oracle=oracle)
    if name in gym.registry:
        return GymnasiumVecEnv([lambda: gym.make(name)] * num_envs)
    raise ValueError(f"unknown env {name!r}; known: 'point' or a registered gymnasium id")


__all__ = ["Point2DEnv", "PointVecEnv", "GymnasiumVecEnv", "NormalizeAction", "OracleObservation",
           "sample_goals", "make_point", "make_point_oracle", "make_vec_env", "register_envs",
           "POINT_HORIZON", "ENV_IDS"]
