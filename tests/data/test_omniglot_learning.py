"""A short first-order Omniglot run on the real data lifts post-update accuracy far above chance."""
import keras
import pytest

from maml_tf import evaluation, experiment, training
from maml_tf.checkpoints import Checkpointer
from maml_tf.few_shot_data import FewShotSampler
from maml_tf.meta_learner import MetaLearner
from data_test_utils import run_module


@pytest.mark.slow
def test_short_omniglot_run_beats_chance(omniglot_data, tmp_path):
    keras.utils.set_random_seed(0)
    model = experiment.build_model("omniglot", num_classes=5)
    learner = MetaLearner(model, experiment.build_loss("omniglot", 1)[0], update_lr=0.4, num_inner_steps=1,
                          first_order=True, classification=True)
    train = FewShotSampler(omniglot_data["train"], 5, 1, 1, rotate=True)
    training.train(learner, train, Checkpointer(str(tmp_path), learner), meta_batch_size=16,
                   pretrain_iterations=0, metatrain_iterations=400, print_fn=lambda s: None)
    val = FewShotSampler(omniglot_data["val"], 5, 1, 1, rotate=True)
    rows = evaluation.evaluate_tasks(learner, val.eval_pool(100), 3)
    assert rows[:, 3].mean() > 0.6, rows.mean(axis=0)  # chance is 0.2


def test_cli_calibrates_convolutions_then_trains(omniglot_prepared, tmp_path):
    """--conv_method=calibrate times the methods for each of the four convolutions at the run's
    shapes, says which it keeps, and trains with them (two first-order iterations); the test
    then calibrates at its own shapes, --test_tasks_per_call tasks per call."""
    common = ["--datasource=omniglot", f"--data_dir={omniglot_prepared}", f"--logdir={tmp_path}", "--num_classes=5",
              "--update_batch_size=1", "--meta_batch_size=4", "--update_lr=0.4", "--metatrain_iterations=2",
              "--stop_grad=True", "--conv_method=calibrate"]
    for phase, shapes in (([], "4 tasks x (5, 5) examples"),
                          (["--train=False", "--num_test_tasks=3", "--test_tasks_per_call=3"], "3 tasks x (5, 5)")):
        result = run_module("maml_tf.main", *common, *phase)
        assert result.returncode == 0, result.stderr
        line = next(line for line in result.stdout.splitlines() if line.startswith("Convolution methods"))
        assert shapes in line, line
        for name in ("conv1", "conv2", "conv3", "conv4"):
            assert any(f"{name} {m}" in line for m in ("im2col", "per_task", "grouped")), line
