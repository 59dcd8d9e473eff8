"""`--distribute=multi_worker`: two worker processes on localhost (TF_CONFIG, tests/cluster.py)
against one process. The same meta-gradients (so the same meta-update) for the Omniglot-shaped
step and the sinusoid; a real training job whose chief alone writes, stopped by a signal to one
worker at the same iteration everywhere, resumed on one device; a lost worker ends the job with
one line."""
import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from cluster import run_workers, start_workers
from distributed_cases import CONFIGS, RTOL, build_learner, global_relative_difference, random_batch


def test_two_workers_compute_the_single_process_meta_gradient(tmp_path):
    """Each worker adapts half the meta-batch; the all-reduced meta-gradient (eq. (1), mean over
    all T tasks) and the logged means equal one process's over all T tasks to float32 round-off,
    for every configuration of tests/distributed_cases.py."""
    out = tmp_path / "gradients.npz"
    results = run_workers(["tests/distributed_worker.py", str(out)])
    for rc, stdout, stderr in results:
        assert rc == 0, stderr[-3000:]
    saved = np.load(out)
    for name, (datasource, _, _, tasks) in sorted(CONFIGS.items()):
        assert int(saved[f"{name}/replicas"]) == 2
        learner = build_learner(name)
        b = random_batch(datasource, tasks)
        scores, gradients = tf.function(lambda s, q: learner.meta_gradients(s, q, score_every_step=False))(
            b.support, b.query)
        reduced = [saved[f"{name}/gradient/{i}"] for i in range(len(gradients))]
        assert global_relative_difference([g.numpy() for g in gradients], reduced) < RTOL, name
        for field, value in zip(scores._fields, scores.mean()):
            np.testing.assert_allclose(saved[f"{name}/{field}"], value.numpy(), rtol=RTOL, atol=1e-6, err_msg=name)


SINUSOID = ["-m", "maml_tf.main", "--datasource=sinusoid", "--meta_batch_size=4", "--update_batch_size=10",
            "--update_lr=0.01"]


def _run_dir(logdir):
    (run_dir,) = glob.glob(os.path.join(logdir, "cls_5*"))
    return run_dir


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("maml_tf.main:")]


def test_stop_on_one_worker_stops_the_job_and_it_resumes_on_one_device(tmp_path):
    """SIGTERM to the non-chief worker: both workers stop after the same iteration N (the stop is
    agreed by an all-reduce each iteration), exit 143 with one line each; only the chief wrote to
    --logdir (one TensorBoard file, checkpoint model-N); the same command with
    --distribute=none resumes from N; the test protocol on two workers writes one process's csv."""
    logdir = str(tmp_path / "runs")
    workers = start_workers([*SINUSOID, "--metatrain_iterations=100000", f"--logdir={logdir}",
                             "--distribute=multi_worker"], env={"PYTHONUNBUFFERED": "1"})
    try:
        for line in workers[0].stdout:
            if "Done initializing" in line:
                break
        time.sleep(3)
        workers[1].send_signal(signal.SIGTERM)
        outputs = [w.communicate(timeout=120) for w in workers]
    finally:
        for w in workers:
            w.kill()
    lines = [_error_lines(err) for _, err in outputs]
    assert [w.returncode for w in workers] == [143, 143], outputs
    stopped = [re.fullmatch(r"maml_tf\.main: stopped by SIGTERM after iteration (\d+) \((the chief )?saved model-\1\); "
                            r"run the same command to resume", line[-1]) for line in lines]
    assert all(stopped), lines
    iteration = int(stopped[0].group(1))
    assert int(stopped[1].group(1)) == iteration and stopped[1].group(2) and not stopped[0].group(2)
    run_dir = _run_dir(logdir)
    files = sorted(os.listdir(run_dir))
    events = [f for f in files if f.startswith("events.out.tfevents")]
    assert len(events) == 1, files  # the chief's; the worker wrote nothing (its RunLock .lock neither)
    assert sorted(set(files) - set(events)) == [".lock", "checkpoint", f"model-{iteration}.data-00000-of-00001",
                                                f"model-{iteration}.index", "run_info.json"]
    resumed = subprocess.run([sys.executable, *SINUSOID, f"--metatrain_iterations={iteration + 3}", f"--logdir={logdir}"],
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming {run_dir} from iteration {iteration}" in resumed.stdout
    assert os.path.exists(os.path.join(run_dir, f"model-{iteration + 3}.index"))

    # The test protocol on two workers: tasks split (5: padded to 6), the chief writes the csv
    # that one process writes, byte for byte.
    test = [*SINUSOID, f"--metatrain_iterations={iteration + 3}", f"--logdir={logdir}", "--train=False",
            "--num_test_tasks=5"]
    csv_path = os.path.join(run_dir, "test_ubs10_stepsize0.01.csv")
    single = subprocess.run([sys.executable, *test], capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-2000:]
    expected = open(csv_path).read()
    os.remove(csv_path)
    for rc, _, err in run_workers([*test, "--distribute=multi_worker"]):
        assert rc == 0, err[-2000:]
    assert open(csv_path).read() == expected


def test_a_lost_worker_ends_the_job_with_one_line(tmp_path):
    """The non-chief worker killed (SIGKILL, no chance to say anything): the chief's collective
    fails and it exits 1 with one line saying to rerun the command on every worker."""
    workers = start_workers([*SINUSOID, "--metatrain_iterations=100000", f"--logdir={tmp_path}",
                             "--distribute=multi_worker"], env={"PYTHONUNBUFFERED": "1"})
    try:
        for line in workers[0].stdout:
            if "Done initializing" in line:
                break
        time.sleep(2)
        workers[1].kill()
        _, err = workers[0].communicate(timeout=120)
    finally:
        for w in workers:
            w.kill()
    assert workers[0].returncode == 1, err[-3000:]
    assert "Traceback" not in err
    (line,) = _error_lines(err)
    assert line.startswith("maml_tf.main: error: lost contact with another worker of the job (")
    assert line.endswith("rerun the same command on every worker to resume from the newest checkpoint")
