"""Our test protocol against the authors' own test, on the same episodes and the same weights.

The authors' `main.main()` runs unchanged in a child process (`run_original_test.py`) with the
paper's MiniImagenet 5-way 1-shot test command on their released checkpoint (model59000), over
generated 84x84 JPEGs laid out as `data/miniImagenet/test/<wnid>/*.jpg` (the real images are not
available). The child records the episodes their `make_data_tensor` drew (the filename list and
each task's per-shot class order) without changing a value; we write them as our episode list
(`maml_tf.episode_list`, rows in their exact order), import the same checkpoint with
`maml_tf.import_original`, run `maml_tf.main --flagfile=flags/miniimagenet_1shot_test.flags
--test_tasks_file=...` and compare the per-task rows [pre-update support accuracy, query
accuracy after steps 1..10] their test() pickled with ours.
"""
import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from maml_tf.episode_list import write_episode_list

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
RUN_NAME = "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm"
RESULT = "test_ubs1_stepsize0.01.pkl"
N, K = 5, 1  # the paper's command: 5-way, 1-shot, and 1 query image per class at test (2K per class)
THEIR_PREFIX = "./data/miniImagenet/"  # their DataGenerator's folder, relative to its working directory


def make_images(workdir, classes=20, per_class=8, seed=0):
    """Generated MiniImagenet test split: per class three coloured sinusoidal gratings (class
    frequencies and colours, jittered per image, random phases) plus pixel noise, saved as JPEG
    by Pillow like data_prep. Textured rather than flat, so the released model's predictions vary
    (its 10-step accuracy on them is about 80 %) and no exact ties arise in its max-pooling."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:84, 0:84] / 84.0
    for c in range(classes):
        wnid = f"n{90000000 + c:08d}"
        folder = os.path.join(workdir, "data", "miniImagenet", "test", wnid)
        os.makedirs(folder)
        freqs = rng.uniform(1, 5, (3, 2)) * rng.choice([-1, 1], (3, 2))
        colours = rng.uniform(-1, 1, (3, 3))
        for i in range(per_class):
            f = freqs + rng.normal(0, 1.0, freqs.shape)
            phase = rng.uniform(0, 2 * np.pi, 3)
            image = np.full((84, 84, 3), 128.0)
            for g in range(3):
                image += 40 * np.sin(2 * np.pi * (f[g, 0] * xx + f[g, 1] * yy) + phase[g])[..., None] * colours[g]
            image += rng.normal(0, 30, image.shape)
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
                os.path.join(folder, f"{wnid}{i:08d}.jpg"), format="JPEG")


def original_tasks(record, num_tasks, exact_order=True):
    """Our episode-list rows for the first `num_tasks` tasks the authors' code drew.

    Their filename list holds, per task, the N classes in label order, each with 2K files (the
    first K support, the next K query). For shot k their graph then gathers the classes in the
    order record["shuffles"][k][task] (row k*N + i is class perm[i]'s k-th file, label perm[i]);
    with `exact_order` our rows follow that order, else label order (rows are only permuted).
    """
    files, shuffles = record["filenames"], record["shuffles"]
    per_task = N * 2 * K
    assert len(shuffles) == 2 * K and all(len(s) >= num_tasks for s in shuffles), "one shuffle per shot and task"
    assert len(files) >= num_tasks * per_task
    tasks = []
    for t in range(num_tasks):
        task_files = files[t * per_task:(t + 1) * per_task]
        classes = [os.path.dirname(task_files[j * 2 * K]) for j in range(N)]
        assert len(set(classes)) == N, f"task {t}: N distinct classes"
        for j in range(N):
            block = task_files[j * 2 * K:(j + 1) * 2 * K]
            assert {os.path.dirname(f) for f in block} == {classes[j]} and len(set(block)) == 2 * K
        rows = []
        for k in range(2 * K):
            order = shuffles[k][t] if exact_order else range(N)
            assert sorted(order) == list(range(N))
            for j in order:
                path = task_files[j * 2 * K + k]
                assert path.startswith(THEIR_PREFIX), path
                rows.append(("support" if k < K else "query", j, 0, path[len(THEIR_PREFIX):]))
        tasks.append(rows)
    return tasks


def _check(proc, what):
    assert proc.returncode == 0, f"{what} failed:\n{proc.stderr[-3000:]}"


def run_both(tmp_path, checkpoint, num_tasks):
    """(their rows, our rows, seconds): both tests on the same episodes and weights."""
    workdir = tmp_path / "w"  # their main() parses the checkpoint path: no 'model' in it
    make_images(workdir)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    theirs = subprocess.Popen([sys.executable, os.path.join(HERE, "run_original_test.py"), str(workdir),
                               str(checkpoint), str(num_tasks), str(tmp_path / "record.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Meanwhile, the same checkpoint in our format (what `python -m maml_tf.import_original` does).
    from maml_tf.original_checkpoint import import_checkpoint

    ours_dir = tmp_path / "ours"
    try:
        import_checkpoint(str(checkpoint), str(ours_dir))
    except BaseException:
        theirs.kill()
        raise
    out, err = theirs.communicate(timeout=3600)
    _check(subprocess.CompletedProcess(theirs.args, theirs.returncode, out, err), "the authors' test")
    with open(tmp_path / "record.json") as f:
        record = json.load(f)
    with open(workdir / "logs" / RUN_NAME / RESULT, "rb") as f:
        their_rows = pickle.load(f)["mses"]

    tasks_file = tmp_path / "their_episodes.tsv"
    write_episode_list(tasks_file, original_tasks(record, num_tasks),
                       comment="episodes drawn by the authors' make_data_tensor (random.seed(6)), in their row order")
    proc = subprocess.run([sys.executable, "-m", "maml_tf.main", "--flagfile=flags/miniimagenet_1shot_test.flags",
                           f"--logdir={ours_dir}", f"--data_dir={workdir / 'data'}", f"--test_tasks_file={tasks_file}"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    _check(proc, "maml_tf.main")
    with open(ours_dir / RUN_NAME / RESULT, "rb") as f:
        our_rows = pickle.load(f)["mses"]
    with open(ours_dir / RUN_NAME / RESULT.replace(".pkl", ".json")) as f:
        info = json.load(f)
    assert info["num_tasks"] == num_tasks and info["test_tasks_file"] == str(tasks_file)
    return their_rows, our_rows, time.perf_counter() - start


def summary(theirs, ours):
    differ = np.abs(ours - theirs) > 1e-6
    return (f"{int(differ.sum())} of {differ.size} per-task entries differ "
            f"(max {np.abs(ours - theirs).max():.3f}; per step {differ.sum(0).tolist()}); "
            f"means theirs {np.round(theirs.mean(0), 4).tolist()}, ours {np.round(ours.mean(0), 4).tolist()}")


def check_equivalent(theirs, ours, num_tasks, max_differing):
    assert theirs.shape == ours.shape == (num_tasks, 11)
    differ = np.abs(ours - theirs) > 1e-6
    # A differing entry can only be a flipped query prediction (1/5 of a task's accuracy): the
    # inner loop amplifies float rounding (their graph vs ours) on rare near-ties.
    np.testing.assert_allclose(np.abs(ours - theirs)[differ], 0.2, atol=1e-6)
    assert differ.sum() <= max_differing, summary(theirs, ours)
    assert not differ[:, 0].any(), "pre-update accuracies (no adaptation) must be equal"
    assert 0.5 < ours[:, -1].mean() < 0.95, "the generated tasks should be neither trivial nor hopeless"


def test_our_test_equals_the_authors_test_on_their_episodes(tmp_path, shared_data):
    """The authors' unchanged test code and ours, given the same 30 episodes (drawn by their
    sampler, in their row order) and the same released weights, score every task the same at
    every step: equal pre-update accuracy and equal query accuracy after each of the 10 steps
    (at most 2 of the 330 entries may differ, by one query prediction). This pins the whole test
    path at once: JPEG decoding (ours decodes like their tf.image.decode_jpeg; Pillow's decoder
    alone makes 381 of 6600 entries, 6 %, differ), x/255 scaling, checkpoint import, network,
    batch norm with per-set statistics, inner-loop steps and accuracy."""
    theirs, ours, seconds = run_both(tmp_path, shared_data / "original_checkpoint" / "model59000", 30)
    print(f"{summary(theirs, ours)}; {seconds:.0f} s")
    check_equivalent(theirs, ours, 30, max_differing=2)


@pytest.mark.slow
def test_our_test_equals_the_authors_test_on_600_of_their_episodes(tmp_path, shared_data):
    """As the fast test, on the full protocol: the 600 tasks the authors' test draws with the
    paper's command (NUM_TEST_POINTS = 600, their value); at most 0.5 % of the 6600 per-task
    entries may differ, each by one query prediction."""
    theirs, ours, seconds = run_both(tmp_path, shared_data / "original_checkpoint" / "model59000", 600)
    print(f"{summary(theirs, ours)}; {seconds:.0f} s")
    check_equivalent(theirs, ours, 600, max_differing=33)
