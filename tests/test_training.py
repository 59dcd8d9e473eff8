"""Training behaviour: learning happens, resume is exact, the CLI fails clearly."""
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from maml_tf import evaluation, experiment, training
from maml_tf.checkpoints import Checkpointer, CheckpointNotFoundError
from maml_tf.meta_learner import MetaLearner
from maml_tf.sinusoid import SinusoidSampler


def _learner(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    model = experiment.build_model("sinusoid", norm="None")
    return MetaLearner(model, experiment.build_loss("sinusoid", 10)[0], **{"update_lr": 0.01, "num_inner_steps": 1, **kwargs})


def test_sinusoid_sampler_shapes_and_ranges():
    batch = SinusoidSampler(10, 10).sample(np.random.default_rng(0), 25)
    assert batch.support_inputs.shape == batch.support_labels.shape == batch.query_inputs.shape == (25, 10, 1)
    assert np.all(np.abs(batch.support_inputs) <= 5) and np.all(np.abs(batch.support_labels) <= 5)
    oracle = SinusoidSampler(5, 5, oracle=True).sample(np.random.default_rng(0), 3)
    assert oracle.support_inputs.shape == (3, 5, 3)
    amp, phase = oracle.support_inputs[:, :1, 1:2], oracle.support_inputs[:, :1, 2:3]  # constant per task
    np.testing.assert_allclose(oracle.support_labels, amp * np.sin(oracle.support_inputs[..., :1] - phase), rtol=1e-5, atol=1e-6)


def test_short_sinusoid_run_lowers_post_update_loss(tmp_path):
    learner = _learner(meta_lr=0.003)
    sampler = SinusoidSampler(10, 10)
    training.train(learner, sampler, Checkpointer(str(tmp_path), learner), meta_batch_size=25,
                   pretrain_iterations=0, metatrain_iterations=2500, print_fn=lambda s: None)
    rows = evaluation.evaluate_tasks(learner, sampler.eval_pool(100, seed=1), 1)
    pre, post = rows.mean(axis=0)
    assert post < 0.6 * pre, (pre, post)


def _run(tmp_path, name, total, interrupt_at=None):
    """Train to `total` iterations (saving every 20); optionally die at `interrupt_at`."""
    lines = []

    def record(line):
        if interrupt_at is not None and line.startswith(f"Iteration {interrupt_at}:"):
            raise KeyboardInterrupt
        lines.append(re.sub(r"\s+\(.*\)$", "", line))  # drop the it/s and ETA

    learner = _learner()
    checkpointer = Checkpointer(str(tmp_path / name), learner)
    start = checkpointer.restore(-1)
    try:
        training.train(learner, SinusoidSampler(10, 10), checkpointer, meta_batch_size=5, pretrain_iterations=0,
                       metatrain_iterations=total, start_iteration=start, print_interval=10,
                       summary_interval=5, save_interval=20, print_fn=record)
    except KeyboardInterrupt:
        pass
    return lines, [v.numpy() for v in learner.variables], start


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    straight, straight_weights, _ = _run(tmp_path, "straight", 70)
    _, _, _ = _run(tmp_path, "interrupted", 70, interrupt_at=50)
    resumed, resumed_weights, start = _run(tmp_path, "interrupted", 70)
    assert start == 40  # the last checkpoint before the interruption
    after = lambda lines: [line for line in lines if int(line.split()[1].rstrip(":")) > 40]  # noqa: E731
    # (the line at 40 itself averages a shorter window after a resume, as in the original)
    assert len(after(straight)) == 2 and after(resumed) == after(straight)
    for a, b in zip(straight_weights, resumed_weights):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_keeps_optimizer_state_and_iteration(tmp_path):
    learner = _learner()
    training.train(learner, SinusoidSampler(10, 10), Checkpointer(str(tmp_path), learner), meta_batch_size=5,
                   pretrain_iterations=3, metatrain_iterations=4, print_fn=lambda s: None)
    other = _learner(seed=1)
    assert Checkpointer(str(tmp_path), other).restore(-1) == 7
    assert int(other.meta_optimizer.iterations.numpy()) == 4
    assert int(other.pretrain_optimizer.iterations.numpy()) == 3
    for a, b in zip(learner.meta_optimizer.variables, other.meta_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_checkpoint_iteration_is_a_clear_error(tmp_path):
    learner = _learner()
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint model-5"):
        Checkpointer(str(tmp_path), learner).restore(5)


def _main(args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "maml_tf.main", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_cli_refuses_bad_flags_before_importing_tensorflow(repo_root):
    """A bad flag is one line at once: main() validates the flags before anything imports
    TensorFlow (whose import takes seconds). `-X importtime` lists every module imported."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "maml_tf.main", "--meta_batch_size=0"],
                            capture_output=True, text=True, cwd=repo_root, env=env, timeout=600)
    assert result.returncode == 1
    timings = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    other = [line for line in result.stderr.strip().splitlines() if not line.startswith("import time:")]
    assert other == ["maml_tf.main: error: --meta_batch_size must be >= 1, got 0"]
    imported = {line.rsplit("|", 1)[-1].strip() for line in timings}
    assert "absl.flags" in imported and "tensorflow" not in imported and "keras" not in imported


def test_cli_test_without_checkpoint_fails_with_one_line(tmp_path, repo_root):
    result = _main(["--flagfile=flags/sinusoid_test5.flags", f"--logdir={tmp_path}"], repo_root)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("maml_tf.main: error: no checkpoint in")


@pytest.mark.parametrize("args,message", [
    (["--baseline=oracle", "--datasource=omniglot"], "only defined for --datasource=sinusoid"),
    (["--meta_batch_size=0"], "--meta_batch_size must be >= 1"),
    (["--norm=batchnorm"], "norm"),
    (["--datasource=omniglot", "--data_dir=/nonexistent"], "no omniglot_resized folder at /nonexistent"),
    (["--datasource=miniimagenet", "--max_pool=True", "--data_dir=/nonexistent"], "no miniImagenet folder"),
    (["--datasource=miniimagenet", "--data_dir=/nonexistent"], "needs --max_pool=True"),
])
def test_cli_rejects_bad_flags(tmp_path, repo_root, args, message):
    result = _main([*args, f"--logdir={tmp_path}", "--metatrain_iterations=1"], repo_root)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_trains_then_tests_and_writes_the_original_outputs(tmp_path, repo_root):
    """Train 30 iterations, test: the original's csv and pkl. --jit_compile unset, a run this
    short runs graphs without timing XLA (maml_tf.main.xla_left_off) and records so."""
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--metatrain_iterations=30"]
    train = _main(args, repo_root)
    assert train.returncode == 0, train.stderr
    assert "XLA" not in train.stdout + train.stderr
    test = _main(args + ["--train=False", "--update_batch_size=5", "--train_update_batch_size=10"], repo_root)
    assert test.returncode == 0, test.stderr
    run_dir = tmp_path / "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm"
    header, means, stds, ci95 = evaluation.read_results(str(run_dir / "test_ubs5_stepsize0.01.csv"))
    assert header == [f"update{i}" for i in range(11)]
    np.testing.assert_allclose(ci95, 1.96 * stds / np.sqrt(600), rtol=1e-6)
    assert (run_dir / "test_ubs5_stepsize0.01.pkl").exists() and (run_dir / "run_info.json").exists()
    assert sorted(p.name for p in run_dir.glob("model-*.index")) == ["model-30.index"]
    starts = json.loads((run_dir / "run_info.json").read_text())["starts"]
    assert starts == [{"iteration": 0, "pretrain_iterations": 0, "metatrain_iterations": 30, "jit_compile": False,
                       "conv_method": "auto", "dense_method": "auto", "distribute": "none"}]


def test_cli_test_describes_the_run_as_its_training_recorded_it(tmp_path, repo_root):
    """The pretrained sinusoid baseline and MAML share a run name. Pretrained 20 iterations,
    then started with the MAML command at 20 iterations (nothing to do: the record stays as it
    was), then tested with the MAML command line (whose --metatrain_iterations is not 0): the
    test describes model-20 as the pretrained baseline its run_info.json records, and
    report.compare puts it next to the paper's pretrained numbers, not MAML's, saying its
    checkpoint is at 20 of the 70000 iterations of the paper's command
    (flags/sinusoid_pretrain.flags), and nothing else (the test drew the original's tasks; every other setting is the command's)."""
    maml = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}"]
    outputs = []
    for args in (["--flagfile=flags/sinusoid_pretrain.flags", f"--logdir={tmp_path}", "--pretrain_iterations=20"],
                 maml + ["--metatrain_iterations=20"],
                 maml + ["--train=False", "--update_batch_size=5", "--train_update_batch_size=10", "--num_test_tasks=5"]):
        done = _main(args, repo_root)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "Nothing to do: the run is at iteration 20 of 20." in outputs[1]
    run_dir = tmp_path / "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm"
    info = json.loads((run_dir / "test_ubs5_stepsize0.01.json").read_text())
    assert (info["method"], info["pretrain_iterations"], info["metatrain_iterations"]) == ("pretrain", 20, 0)
    assert info["test_pool"] == "original"  # the original's tasks: report.compare adds no caveat
    assert (info["update_batch_size"], info["train_update_batch_size"]) == (5, 10)  # the paper's sinusoid model: K=10
    from report import compare

    row = next(line for line in compare.table([compare.Result(str(run_dir / "test_ubs5_stepsize0.01.csv"))]).splitlines()
               if "Sinusoid 5-shot, pretrained (MSE)" in line)
    assert "earlier test tasks" not in row
    assert info["training_flags"]["meta_batch_size"] == 25
    assert "[checkpoint at 20 of the paper's 70000 iterations; 5 test tasks (the paper's 600)]" in row


@pytest.mark.parametrize("starts,iteration,method", [
    ([(0, 20, 0), (20, 0, 30)], 20, "pretrain"),  # pretrained, then meta-trained on: model-20 is pretrained
    ([(0, 20, 0), (20, 0, 30)], 30, "maml"),
    ([(0, 20, 0), (10, 0, 30)], 20, "maml"),  # resumed at 10 with meta-training: 10..19 were meta-iterations
    ([(0, 0, 30)], 10, "maml"),
    ([(0, 20, 30)], 20, "pretrain"),  # one start that pretrains 20, then meta-trains
    ([(0, 20, 30)], 21, "maml"),
    (None, 20, "pretrain"),  # starts without iteration counts (before 29 November): the recorded method
    # resumed from model-2000 (--test_iter) after a start at 5000: model-4000 was pretrained from 0 to 4000
    ([(0, 3000, 7000), (5000, 3000, 7000), (2000, 10000, 0)], 4000, "pretrain"),
    ([(0, 3000, 7000), (5000, 3000, 7000), (2000, 10000, 0)], 1000, "pretrain"),
    ([(0, 1000, 7000), (5000, 3000, 7000), (2000, 10000, 0)], 4000, "maml"),  # 1000..1999 meta-trained
    ([(5000, 0, 7000)], 6000, "maml"),  # starts recorded from a resume at 5000 on: 5000..5999 meta-trained
])
def test_trained_as_describes_each_checkpoint_by_the_iterations_before_it(tmp_path, starts, iteration, method):
    """maml_tf.main.trained_as: a checkpoint is the pretrained baseline if every iteration up to
    it pretrained (iteration i < that start's pretrain_iterations), by the starts run_info.json
    records; the oracle stays the oracle; no run_info.json: nothing to add; a damaged one: a
    warning, nothing to add."""
    from maml_tf.main import RUN_INFO, trained_as

    records = [{"iteration": 0}] if starts is None else [
        {"iteration": i, "pretrain_iterations": p, "metatrain_iterations": m} for i, p, m in starts]
    (tmp_path / RUN_INFO).write_text(json.dumps({"method": "pretrain", "pretrain_iterations": 20,
                                                 "metatrain_iterations": 0, "starts": records}))
    assert trained_as(str(tmp_path), iteration)["method"] == method
    (tmp_path / RUN_INFO).write_text(json.dumps({"method": "oracle", "starts": records}))
    assert trained_as(str(tmp_path), iteration) == {"method": "oracle"}


@pytest.mark.parametrize("iteration", [3000, 5000, 59000])
def test_trained_as_keeps_the_recorded_method_where_the_starts_do_not_reach_back_to_0(tmp_path, iteration):
    """A run whose recorded starts begin at a resume (5000: begun before starts were recorded, or
    trained on from an imported checkpoint) and whose later starts meta-train nothing: what came
    before 5000 is unknown, so the method its run_info.json records (MAML) stands (it was called
    the pretrained baseline)."""
    from maml_tf.main import RUN_INFO, trained_as

    (tmp_path / RUN_INFO).write_text(json.dumps({"method": "maml", "pretrain_iterations": 0,
                                                 "metatrain_iterations": 60000, "starts": [
                                                     {"iteration": 5000, "pretrain_iterations": 60000,
                                                      "metatrain_iterations": 0}]}))
    assert trained_as(str(tmp_path), iteration)["method"] == "maml"


def test_trained_as_without_or_with_a_damaged_record(tmp_path, capsys):
    from maml_tf.main import RUN_INFO, trained_as

    assert trained_as(str(tmp_path), 20) == {}
    (tmp_path / RUN_INFO).write_text('{"method": "pre')
    assert trained_as(str(tmp_path), 20) == {}
    assert capsys.readouterr().err.startswith(f"maml_tf.main: warning: {tmp_path / RUN_INFO} is damaged (")


def test_cli_rejects_tasks_larger_than_the_data(tmp_path, repo_root):
    """N above the classes available is refused before any training starts."""
    from PIL import Image

    for split, classes in (("train", 3), ("val", 3)):
        for c in range(classes):
            folder = tmp_path / "miniImagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (84, 84)).save(folder / f"{i}.jpg")
    result = _main(["--datasource=miniimagenet", "--max_pool=True", "--num_filters=32", f"--data_dir={tmp_path}",
                    f"--logdir={tmp_path}/logs", "--num_classes=5"], repo_root)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "5" in result.stderr.splitlines()[-1] and "3" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("model-*"))


def _generated_miniimagenet(root, splits=("train", "val", "test"), classes=5, per_class=20):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in splits:
        for c in range(classes):
            folder = root / "miniImagenet" / split / f"n{split[:2]}{c:06d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)).save(folder / f"{i:08d}.jpg")


@pytest.mark.slow
def test_miniimagenet_paper_flagfile_trains_and_tests_on_generated_images(tmp_path, repo_root):
    """The MiniImagenet path end to end (15 query images per class, 5 steps, gradient clip)."""
    _generated_miniimagenet(tmp_path)
    args = ["--flagfile=flags/miniimagenet_1shot.flags", f"--data_dir={tmp_path}", f"--logdir={tmp_path}/logs",
            "--metatrain_iterations=2"]
    train = _main(args, repo_root)
    assert train.returncode == 0, train.stderr[-2000:]
    test = _main(args + ["--train=False", "--test_set=True", "--num_test_tasks=4"], repo_root)
    assert test.returncode == 0, test.stderr[-2000:]
    run_dir = tmp_path / "logs" / "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm"
    header, means, _, _ = evaluation.read_results(str(run_dir / "test_ubs1_stepsize0.01.csv"))
    assert len(header) == 11 and np.all((means >= 0) & (means <= 1))
