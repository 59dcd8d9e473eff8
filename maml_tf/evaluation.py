"""The original test protocol: adapt to each of 600 fixed tasks, one at a time, and report
mean, population std and ci95 = 1.96 std / sqrt(tasks) per column."""
import csv
import io
import json
import os
import pickle
import shutil

import numpy as np

from report.files import (atomic_open, atomic_write_all, csv_bytes, new_dated_folder, read_complete_text,
                          read_json_object)


def evaluate_tasks(learner, batches, num_inner_steps, tasks_per_call=1, progress=None):
    """Rows [pre-update support metric, query metric after steps 1..num_inner_steps], one per
    task. Accuracies for classification, losses for regression, as the original's test()
    recorded. Consecutive batches are joined into calls of `tasks_per_call` tasks (a
    distributed learner: one per replica, each adapting its task alone as on one device).
    `progress(tasks done)` is called after each call (e.g. `report.console.ProgressLine.update`)."""
    rows, done = [], 0
    for batch in _joined(batches, tasks_per_call):
        scores = learner.evaluate(batch.support, batch.query, num_inner_steps)
        if learner.classification:
            first, rest = scores.support_accuracy, scores.query_accuracies
        else:
            first, rest = scores.support_loss, scores.query_losses
        rows.append(np.concatenate([np.asarray(first)[:, None], np.asarray(rest)], axis=1))
        done += len(rows[-1])
        if progress is not None:
            progress(done)
    return np.concatenate(rows, axis=0)


def _joined(batches, tasks_per_call):
    """The batches (EpisodeBatch or other tuples of [tasks, ...] arrays), up to `tasks_per_call`
    consecutive ones concatenated along the task axis. A batch whose arrays are shaped unlike
    the group's (an episode list's tasks may have other support or query sizes) starts a new
    group: tasks are never reordered."""
    group = []
    for batch in batches:
        if group and _shapes(batch) != _shapes(group[0]):
            yield _concatenate(group)
            group = []
        group.append(batch)
        if len(group) == tasks_per_call:
            yield _concatenate(group)
            group = []
    if group:
        yield _concatenate(group)


def _shapes(batch):
    """The shape of each array of a batch but its task axis."""
    return [np.shape(array)[1:] for array in batch]


def _concatenate(group):
    if len(group) == 1:
        return group[0]
    return type(group[0])(*(np.concatenate(arrays, axis=0) for arrays in zip(*group)))


def summarize(rows):
    """Per step over the tasks: mean, std and the 95 % interval 1.96 std / sqrt(tasks), as the
    original's test(). A task that diverged (inf or nan, or values whose squares overflow) makes
    its steps' mean and std inf or nan, which is what the csv then says (report.compare sets such
    tasks apart), without numpy's warnings."""
    with np.errstate(invalid="ignore", over="ignore"):
        means = rows.mean(axis=0)
        stds = rows.std(axis=0)
    ci95 = 1.96 * stds / np.sqrt(rows.shape[0])
    return means, stds, ci95


def result_paths(run_dir, update_batch_size, update_lr):
    stem = os.path.join(run_dir, f"test_ubs{update_batch_size}_stepsize{update_lr}")
    return stem + ".csv", stem + ".pkl"


# What tells two tests of one run apart beyond their file name (test_ubs{K}_stepsize{alpha}):
# the split, the number of tasks, an episode list, the checkpoint, the fixed pool's tasks.
TEST_IDENTITY = ("test_set", "num_tasks", "test_tasks_file", "checkpoint_iteration", "test_pool")
REPLACED = "replaced_tests"


def keep_other_result(run_dir, update_batch_size, update_lr, description):
    """Before a test: if the run directory holds a result of the same name describing another
    test (`TEST_IDENTITY` values that differ: a validation-split test then a test-split one, a
    smaller test, another checkpoint), keep a copy of its csv, pkl and json in
    `run_dir/replaced_tests/<time>/` (hard links where the file system has them), so the new
    result, written over the old one when the test ends (`write_results`, all or nothing),
    loses nothing (the original overwrote it). A result whose `.json` is missing (the
    original's test wrote none) or damaged is kept too: what it describes is unknown. Returns
    (that folder, what differed) or None."""
    csv_path, pkl_path = result_paths(run_dir, update_batch_size, update_lr)
    json_path = csv_path[:-4] + ".json"
    if not any(os.path.exists(path) for path in (csv_path, pkl_path, json_path)):
        return None
    try:
        previous = read_json_object(json_path, "")
        previous = {**previous, "test_pool": test_pool(previous)}
        differ = ", ".join(f"{key} {previous.get(key)!r} -> {description.get(key)!r}" for key in TEST_IDENTITY
                           if key in previous and key in description and previous.get(key) != description.get(key))
    except (OSError, ValueError) as e:
        differ = f"its description {os.path.basename(json_path)} is " + (
            "missing" if not os.path.exists(json_path) else "damaged" if isinstance(e, ValueError) else "unreadable")
    if not differ:
        return None
    folder = new_dated_folder(os.path.join(run_dir, REPLACED))
    for path in (csv_path, pkl_path, json_path):
        if os.path.exists(path):
            kept = os.path.join(folder, os.path.basename(path))
            try:
                os.link(path, kept)
            except OSError:
                shutil.copy2(path, kept)
    return folder, differ


def write_json(path, data):
    with atomic_open(path, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)


# A test description's "test_pool" when its tasks were the fixed pool: the original's tasks (since
# 29 November 2026; descriptions written before have no "test_pool": our earlier pool).
ORIGINAL_POOL = "original"
EARLIER_POOL = "maml-tf's earlier pool"


def test_pool(description):
    """The tasks a test description's fixed pool held: its "test_pool", or, for a description
    written before there was one (and not of an episode list), `EARLIER_POOL`."""
    if "test_pool" not in description and not description.get("test_tasks_file"):
        return EARLIER_POOL
    return description.get("test_pool")


def write_results(run_dir, update_batch_size, update_lr, rows, info=None):
    """The original's csv (header update0.., means, stds, ci95) and pkl {'mses': rows}, plus a
    `.json` describing the run for `report.compare`. All are written before any is renamed into
    place (`atomic_write_all`, the json last): an interrupted or failed test (a full disk) leaves
    the previous result whole."""
    csv_path, pkl_path = result_paths(run_dir, update_batch_size, update_lr)
    means, stds, ci95 = summarize(rows)
    table = [[f"update{i}" for i in range(rows.shape[1])]] + [[repr(float(v)) for v in values]
                                                              for values in (means, stds, ci95)]
    contents = {pkl_path: pickle.dumps({"mses": rows}), csv_path: csv_bytes(table, line_end="\r\n")}
    if info is not None:
        description = {**info, "update_batch_size": update_batch_size, "update_lr": update_lr,
                       "num_tasks": int(rows.shape[0])}
        contents[csv_path[:-4] + ".json"] = json.dumps(description, indent=1, sort_keys=True).encode()
    atomic_write_all(contents)
    return csv_path, pkl_path


def read_results(csv_path):
    """(header, means, stds, ci95) from a test csv; a ValueError naming it if it is damaged
    (cut short: its last line unended, rows not as long as the header, not numbers)."""
    rows = list(csv.reader(io.StringIO(read_complete_text(csv_path, "re-run the test"), newline="")))
    if len(rows) != 4 or not rows[0] or not rows[0][0].startswith("update"):
        raise ValueError(f"{csv_path} is not a maml test csv (expected a header update0.. and 3 rows)")
    if any(len(r) != len(rows[0]) for r in rows[1:]):
        raise ValueError(f"{csv_path} is damaged: its rows are not as long as its header")
    try:
        return rows[0], *(np.array([float(v) for v in r]) for r in rows[1:])
    except ValueError as e:
        raise ValueError(f"{csv_path} is damaged: {e}") from None
