"""maml-tf: a TensorFlow 2 reproduction of MAML (Finn, Abbeel & Levine, ICML 2017)."""
from setuptools import find_packages, setup

setup(
    name="maml-tf",
    version="0.1.0",
    description="Model-Agnostic Meta-Learning in TensorFlow 2, faithful to the authors' code",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["maml_tf", "maml_tf.*", "rl", "rl.*", "report", "report.*", "data_prep", "data_prep.*"]),
    # Ranges are the ones we test with (TF 2.21 + Keras 3 + tfp 0.25 on CPython 3.11).
    install_requires=[
        "tensorflow>=2.20,<2.22",
        "tensorflow-probability>=0.25,<0.26",
        "tf-keras>=2.20,<2.22",  # tfp 0.25 imports only with tf-keras present
        "tensorboard>=2.20,<3",  # tf.summary needs it; TF 2.21 no longer installs it
        "numpy>=1.26,<3",
        "absl-py>=2.1,<3",
        "pillow>=10,<14",
        "gymnasium[mujoco]>=1.1,<1.5",
    ],
    extras_require={
        "test": ["pytest>=8"],
        "plot": ["matplotlib>=3.8"],
    },
)
