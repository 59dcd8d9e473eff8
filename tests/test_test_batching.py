"""`maml_tf.main --train=False --test_tasks_per_call=N` adapts N test tasks per call through the
batched path and writes, per task, the numbers of the original's one-task-at-a-time test (the
[600, steps + 1] pkl rows the csv summarises), to float32 round-off."""
import pickle

import numpy as np
from cli import run_main




def test_batched_test_writes_the_one_at_a_time_rows(tmp_path, repo_root):
    common = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}"]
    trained = run_main(common + ["--metatrain_iterations=20"], repo_root)
    assert trained.returncode == 0, trained.stderr[-2000:]
    rows = {}
    for per_call in (1, 40):
        tested = run_main(common + ["--train=False", "--num_test_tasks=80", "--update_batch_size=5",
                                 "--train_update_batch_size=10", f"--test_tasks_per_call={per_call}"], repo_root)
        assert tested.returncode == 0, tested.stderr[-2000:]
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
