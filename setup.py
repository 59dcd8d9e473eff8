"""maml-tf: a TensorFlow 2 reproduction of MAML (Finn, Abbeel & Levine, ICML 2017)."""
import os

from setuptools import find_packages, setup

TF_RANGE = ">=2.20,<2.22"
if os.environ.get("MAML_TF_GPU", "") not in ("", "0"):
    TENSORFLOW = [f"tensorflow[and-cuda]{TF_RANGE}; platform_system == 'Linux'",
                  f"tensorflow{TF_RANGE}; platform_system != 'Linux'"]
else:
    TENSORFLOW = [f"tensorflow-cpu{TF_RANGE}; platform_system == 'Linux' and platform_machine == 'x86_64'",
                  f"tensorflow{TF_RANGE}; platform_system != 'Linux' or platform_machine != 'x86_64'"]

setup(
    name="maml-tf",
    version="0.1.0",
    description="Model-Agnostic Meta-Learning in TensorFlow 2, faithful to the authors' code",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["maml_tf", "maml_tf.*", "rl", "rl.*", "report", "report.*", "data_prep", "data_prep.*"]),
    # Ranges are the ones we test with (TF 2.21 + Keras 3 on CPython 3.11). The default is TensorFlow's
    # CPU-only wheel where one exists (Linux x86-64): the full `tensorflow` wheel logs CUDA-stub and
    # cuInit errors on every start on a machine without a GPU, before any environment variable can
    # silence them. For a GPU: MAML_TF_GPU=1 pip install -e ... (installs tensorflow[and-cuda]).
    install_requires=TENSORFLOW + [
        "tensorboard>=2.20,<3",  # tf.summary needs it; TF 2.21 no longer installs it
        "numpy>=1.26,<3",
        "absl-py>=2.1,<3",
        "pillow>=10,<14",
        "gymnasium[mujoco]>=1.1,<1.5",
        "mujoco>=4.0,<5",  # mujoco.batch steps the locomotion envs (rl/envs/locomotion.py)
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],  # the suite runs on three worker processes (pytest.ini)
        "plot": ["matplotlib>=3.8"],
        "bench": ["torch==2.13.0"],
    },
)
