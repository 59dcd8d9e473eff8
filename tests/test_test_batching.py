"""`maml_tf.main --train=False --test_tasks_per_call=N` adapts N test tasks per call through the
batched path and writes, per task, the numbers of the original's one-task-at-a-time test (the
[600, steps + 1] pkl rows the csv summarises), to float32 round-off."""
import pickle

import numpy as np
from cli import run_main

# `python -m maml_tf.main` with maml_tf.evaluation.evaluate_tasks wrapped so that the tasks done
# after each call of the learner (its progress callback) are printed at the end: what main
# actually asked for, whatever it was given.
_COUNTING_MAIN = """
import runpy, sys
from maml_tf import evaluation
done_after_each_call, evaluate_tasks = [], evaluation.evaluate_tasks

def counted(learner, batches, num_inner_steps, tasks_per_call=1, progress=None):
    def count(done):
        done_after_each_call.append(done)
        if progress is not None:
            progress(done)
    rows = evaluate_tasks(learner, batches, num_inner_steps, tasks_per_call, count)
    print("done after each call:", done_after_each_call, file=sys.stderr)
    return rows

evaluation.evaluate_tasks = counted
runpy.run_module("maml_tf.main", run_name="__main__", alter_sys=True)
"""


def test_batched_test_writes_the_one_at_a_time_rows(tmp_path, repo_root):
    """The 80-task sinusoid test in calls of 1 task and of 40 (main's calls counted: 80 and 2):
    the same per-task rows."""
    common = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}"]
    trained = run_main(common + ["--metatrain_iterations=20"], repo_root)
    assert trained.returncode == 0, trained.stderr[-2000:]
    rows = {}
    for per_call in (1, 40):
        tested = run_main(common + ["--train=False", "--num_test_tasks=80", "--update_batch_size=5",
                                    "--train_update_batch_size=10", f"--test_tasks_per_call={per_call}"], repo_root,
                          wrapper=_COUNTING_MAIN)
        assert tested.returncode == 0, tested.stderr[-2000:]
        assert f"done after each call: {list(range(per_call, 81, per_call))}" in tested.stderr
        pkl = next(tmp_path.rglob("test_ubs5_stepsize0.01.pkl"))
        with open(pkl, "rb") as f:
            rows[per_call] = np.asarray(pickle.load(f)["mses"])
        pkl.unlink()
    assert rows[1].shape == (80, 11)
    np.testing.assert_allclose(rows[40], rows[1], rtol=1e-6, atol=1e-7)


def test_zero_tasks_per_call_is_refused_in_one_line(tmp_path, repo_root):
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--train=False",
                    "--test_tasks_per_call=0"], repo_root)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("--test_tasks_per_call must be >= 1, got 0")


def test_tasks_of_other_sizes_go_in_calls_of_their_own():
    """An episode list may give tasks other query sizes (episode_list checks them per task only):
    consecutive tasks of one size share a call, a task of another size starts a new call, and the
    rows come back in the tasks' order. (Joining them used to fail in np.concatenate, late in the
    test, with a message naming neither the flag nor the file.)"""
    from maml_tf import evaluation, maml
    from maml_tf.episodes import EpisodeBatch

    calls = []

    class RecordingLearner:
        classification = True

        def evaluate(self, support, query, steps):
            calls.append(query[0].shape[:2])
            task_ids = support[0][:, 0, 0]
            per_step = np.tile(task_ids[:, None], (1, steps))
            return maml.Scores(support_loss=-task_ids, support_accuracy=task_ids, query_losses=-per_step,
                               query_accuracies=per_step)

    def task(task_id, query_per_class):
        support = np.full((1, 5, 2), float(task_id))
        return EpisodeBatch(support, np.zeros((1, 5, 5)), np.zeros((1, 5 * query_per_class, 2)),
                            np.zeros((1, 5 * query_per_class, 5)))

    sizes = [1, 1, 1, 2, 2, 1]
    rows = evaluation.evaluate_tasks(RecordingLearner(), [task(i, q) for i, q in enumerate(sizes)], 3,
                                     tasks_per_call=2)
    assert calls == [(2, 5), (1, 5), (2, 10), (1, 5)]
    np.testing.assert_array_equal(rows[:, 0], np.arange(6))
    np.testing.assert_array_equal(rows[:, 1:], np.tile(np.arange(6.0)[:, None], (1, 3)))
