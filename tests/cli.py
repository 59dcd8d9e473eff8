"""Run `python -m maml_tf.main` as a user would, quietly: the tests' one way to call the CLI."""
import os
import subprocess
import sys


def run_main(args, cwd, wrapper=None, **kwargs):
    """`python -m maml_tf.main ARGS`; with `wrapper` (Python code that ends by running the module,
    e.g. with runpy), `python -c WRAPPER ARGS` instead."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = ["-m", "maml_tf.main"] if wrapper is None else ["-c", wrapper]
    return subprocess.run([sys.executable, *command, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600, **kwargs)
