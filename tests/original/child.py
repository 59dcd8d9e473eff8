"""Run one of this folder's child-process scripts (the authors' TF1 code needs a process of its own:
tf1_compat switches TensorFlow to graph mode for good) on a job of numpy arrays."""
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent


def run_child(script, job):
    """`python tests/original/<script> JOB.npz RESULT.npz`; returns (result arrays, seconds).
    A failure raises RuntimeError with the end of the child's stderr."""
    with tempfile.TemporaryDirectory() as workdir:
        job_path, result_path = os.path.join(workdir, "job.npz"), os.path.join(workdir, "result.npz")
        np.savez(job_path, **job)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(HERE / script), job_path, result_path],
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"the original code ({script}) failed:\n{proc.stderr[-4000:]}")
        return dict(np.load(result_path)), seconds
