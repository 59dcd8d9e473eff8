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
import pytest
import tensorflow as tf

from cluster import run_workers, start_workers
from distributed_cases import CONFIGS, RTOL, build_learner, global_relative_difference, in_theory_zero, random_batch


@pytest.fixture(scope="module")
def two_worker_results(tmp_path_factory):
    """What tests/distributed_worker.py saved from one 2-worker job."""
    out = tmp_path_factory.mktemp("two_workers") / "results.npz"
    for rc, _, stderr in run_workers(["tests/distributed_worker.py", str(out)]):
        assert rc == 0, stderr[-3000:]
    return np.load(out)


def test_two_workers_compute_the_single_process_meta_gradient(two_worker_results):
    """Each worker adapts half the meta-batch; the all-reduced meta-gradient (eq. (1), mean over
    all T tasks) and the logged means equal one process's over all T tasks to float32 round-off,
    for every configuration of tests/distributed_cases.py."""
    saved = two_worker_results
    for name, (datasource, _, _, tasks) in sorted(CONFIGS.items()):
        assert int(saved[f"{name}/replicas"]) == 2
        learner = build_learner(name)
        b = random_batch(datasource, tasks)
        scores, gradients = tf.function(lambda s, q: learner.meta_gradients(s, q, score_every_step=False),
                                        autograph=False)(
            b.support, b.query)
        reduced = [saved[f"{name}/gradient/{i}"] for i in range(len(gradients))]
        assert global_relative_difference([g.numpy() for g in gradients], reduced) < RTOL, name
        for field, value in zip(scores._fields, scores.mean()):
            np.testing.assert_allclose(saved[f"{name}/{field}"], value.numpy(), rtol=RTOL, atol=1e-6, err_msg=name)


def test_each_worker_adapts_its_own_half_of_the_tasks(two_worker_results):
    """The chief's replica receives the first T/2 tasks of the batch and nothing else (were every
    worker given all T tasks, the all-reduced mean of identical gradients would still be the
    single process's, and the comparisons above could not tell)."""
    batch = random_batch("sinusoid", CONFIGS["sinusoid"][3])
    np.testing.assert_array_equal(two_worker_results["split/local_support_inputs"],
                                  np.asarray(batch.support[0])[:CONFIGS["sinusoid"][3] // 2])


def test_two_workers_make_the_single_process_adam_updates(two_worker_results):
    """Two Adam meta-updates of the sinusoid with its 6 tasks split 3 + 3 over two processes:
    Adam's iteration count, both moments and the weights equal one process's to float32
    round-off (the weights whose gradient is zero in theory aside: Adam turns their round-off
    into full steps, see distributed_cases.in_theory_zero)."""
    saved = two_worker_results
    learner = build_learner("sinusoid")
    step = tf.function(lambda s, q: learner.meta_gradients(s, q, score_every_step=False), autograph=False)
    for seed in range(2):
        b = random_batch("sinusoid", CONFIGS["sinusoid"][3], seed=seed)
        _, gradients = step(b.support, b.query)
        learner.apply_meta_gradients(gradients)
    keep = [not zero for zero in in_theory_zero([g.numpy() for g in gradients])]
    assert sum(keep) >= len(keep) // 2
    optimizer = [v.numpy() for v in learner.meta_optimizer.variables]
    assert int(saved["trained/optimizer/0"]) == int(optimizer[0]) == 2
    moments = [(optimizer[2 + 2 * i], optimizer[3 + 2 * i]) for i in range(len(keep))]
    for i, (m, v) in enumerate(moments):
        if keep[i]:
            assert global_relative_difference([m, v], [saved[f"trained/optimizer/{2 + 2 * i}"],
                                                       saved[f"trained/optimizer/{3 + 2 * i}"]]) < 10 * RTOL
    weights = [v.numpy() for v, k in zip(learner.variables, keep) if k]
    assert global_relative_difference(weights, [saved[f"trained/weight/{i}"] for i, k in enumerate(keep) if k]) < RTOL


SINUSOID = ["-m", "maml_tf.main", "--datasource=sinusoid", "--meta_batch_size=4", "--update_batch_size=10",
            "--update_lr=0.01"]


def _run_dir(logdir):
    (run_dir,) = glob.glob(os.path.join(logdir, "cls_5*"))
    return run_dir


def _training_job(logdir):
    """A long 2-worker sinusoid training, returned once the chief has started training."""
    workers = start_workers([*SINUSOID, "--metatrain_iterations=100000", f"--logdir={logdir}",
                             "--distribute=multi_worker"], env={"PYTHONUNBUFFERED": "1"})
    for line in workers[0].stdout:
        if "Done initializing" in line:
            break
    return workers


def _error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("maml_tf.main:")]


def test_stop_on_one_worker_stops_the_job_which_resumes_and_tests_on_any_replica_count(tmp_path):
    """SIGTERM to the non-chief worker: both workers stop after the same iteration N (the stop is
    agreed by an all-reduce each iteration), exit 143 with one line each; only the chief wrote to
    --logdir (one TensorBoard file, checkpoint model-N); the same command resumes both from N;
    the resulting checkpoint tested on one device and on two workers gives the same csv."""
    logdir = str(tmp_path / "runs")
    workers = _training_job(logdir)
    try:
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
    # The same command resumes both workers from the chief's checkpoint (weights, Adam state and
    # iteration sent to the worker).
    (chief_rc, chief_out, chief_err), (worker_rc, _, worker_err) = run_workers(
        [*SINUSOID, f"--metatrain_iterations={iteration + 3}", f"--logdir={logdir}", "--distribute=multi_worker"])
    assert chief_rc == worker_rc == 0, chief_err[-2000:] + worker_err[-2000:]
    assert f"Resuming {run_dir} from iteration {iteration}" in chief_out
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
    workers = _training_job(tmp_path)
    try:
        time.sleep(2)
        workers[1].kill()
        _, err = workers[0].communicate(timeout=120)
    finally:
        for w in workers:
            w.kill()
    assert workers[0].returncode == 1, err[-3000:]
    assert "Traceback" not in err
    (line,) = _error_lines(err)
    assert line.startswith("maml_tf.main: error: lost contact with another process of the job (")
    assert line.endswith("rerun the same command on every worker to resume from the chief's newest checkpoint")


@pytest.mark.parametrize("case", ["chief_fails_its_checks", "worker_has_other_flags"])
def test_a_failed_start_ends_every_process_with_one_line(tmp_path, case):
    """The processes agree to start (report.distribution.agree_to_start) before any other
    collective: if the chief's own checks fail (here --logdir is a file), it prints its error and
    the worker says another process failed; if a worker was started with another --update_lr,
    it says its flags differ and the chief says another worker's do, both naming update_lr. Nobody waits for a
    collective, nothing is trained, every process exits 1 with one line."""
    logdir = tmp_path / "runs"
    if case == "chief_fails_its_checks":
        logdir.write_text("not a directory")
    args = [*SINUSOID, "--metatrain_iterations=5", f"--logdir={logdir}", "--distribute=multi_worker"]
    if case == "chief_fails_its_checks":
        results = run_workers(args, timeout=120)
        expected = ["maml_tf.main: error: ", "maml_tf.main: error: 1 other process(es) of the job failed their "
                                             "start-up checks (see their output); nothing was run"]
    else:
        results = run_workers(args, timeout=120, per_worker_args=[[], ["--update_lr=0.02"]])
        expected = ["maml_tf.main: error: another worker's training flags differ from the chief's (update_lr)",
                    "maml_tf.main: error: this worker's training flags differ from the chief's (update_lr)"]
    for (rc, _, err), start in zip(results, expected):
        assert rc == 1, err[-2000:]
        assert "Traceback" not in err
        (line,) = _error_lines(err)
        assert line.startswith(start), line
    if case == "chief_fails_its_checks":
        assert "run directory" in _error_lines(results[0][2])[0]


def test_workers_that_never_all_start_end_after_join_timeout():
    """Worker 0 of a 2-worker TF_CONFIG started alone: TensorFlow would wait forever (deaf to
    SIGTERM); after --join_timeout the watchdog prints one line naming the flag and ends it."""
    (worker,) = start_workers([*SINUSOID, "--distribute=multi_worker", "--join_timeout=3"], workers=2, only=[0])
    _, err = worker.communicate(timeout=120)
    assert worker.returncode == -9  # killed: TensorFlow holds the interpreter while it waits
    (line,) = _error_lines(err)
    assert line == ("maml_tf.main: error: not every worker of TF_CONFIG started within --join_timeout=3 s; start the "
                    "same command on every worker listed there")
