"""MAML-RL: MAML-TRPO (Finn et al., 2017) on gymnasium environments.

Importing the package registers the gymnasium ids ``MAML/Point2D-v0`` and
``MAML/Point2DOracle-v0`` so that ``gymnasium.make`` works.

Like maml_tf, it first asks TensorFlow for its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS=1) unless
the environment says otherwise: TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI,
BF16 or AMX, and on an AVX2-only AMD EPYC the half-cheetah TRPO step ran 1.6x faster with them
(benchmarks/README.md, "The RL package makes the same default"). Read when TensorFlow loads, so
it holds for the entry points (`python -m rl.train`, `rl.evaluate`); TF_ENABLE_ONEDNN_OPTS=0
keeps Eigen's kernels.
"""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from rl.envs import register_envs as _register_envs  # noqa: E402

_register_envs()
