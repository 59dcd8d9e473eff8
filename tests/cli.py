"""Run `python -m maml_tf.main` as a user would, quietly: the tests' one way to call the CLI."""
import os
import subprocess
import sys


def run_main(args, cwd, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "maml_tf.main", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600, **kwargs)
