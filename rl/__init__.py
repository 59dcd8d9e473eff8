"""MAML-RL: MAML-TRPO (Finn et al., 2017) on gymnasium environments.

Importing the package registers the gymnasium ids ``MAML/Point2D-v0`` and
``MAML/Point2DOracle-v0`` so that ``gymnasium.make`` works.
"""
from rl.envs import register_envs as _register_envs

_register_envs()
