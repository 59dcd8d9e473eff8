"""XLA (`MetaLearner(jit_compile=True)`, `maml_tf.main --jit_compile`) computes the same steps as
the graph: the meta-gradient of eq. (1) through the inner step, second and first order, the
pretrained baseline's step and the test's adaptation, to float64 round-off; and the per-task
losses it relies on (maml_tf/losses.py: one value per task, no vectorized_map) equal a loop over
tasks."""

import numpy as np
import pytest
import tensorflow as tf

from maml_tf import batched_forward, losses
from maml_tf.meta_learner import MetaLearner
from test_meta_gradients import _image_batch, _mlp, _regression_batch, _tiny_conv
from cli import run_main

# float64 on both sides: XLA fuses and reorders sums, so only round-off may differ.
TOLERANCE = 1e-10


def _learners(case, first_order=False, steps=1, conv="im2col", dense="auto"):
    """Two learners on the same weights and data, the second compiled by XLA."""
    if case == "sinusoid_mlp":
        make, loss, batch, classification = _mlp, losses.mse, _regression_batch(), False
    else:
        make, loss, batch, classification = ((lambda: _tiny_conv("batch_norm")), losses.summed_cross_entropy(2),
                                             _image_batch((7, 7, 1)), True)
    options = dict(update_lr=0.1, num_inner_steps=steps, first_order=first_order, classification=classification,
                   dense=dense)
    graph = MetaLearner(make(), loss, conv=conv if case != "sinusoid_mlp" else "auto", **options)
    xla = MetaLearner(make(), loss, conv=conv if case != "sinusoid_mlp" else "auto", jit_compile=True, **options)
    return graph, xla, batch


def _relative(ours, theirs):
    """max |a - b| over all tensors / max |b|: bias gradients ahead of batch norm are round-off
    around zero, so each tensor alone would compare noise with noise."""
    ours, theirs = [np.asarray(a) for a in ours], [np.asarray(b) for b in theirs]
    scale = max(np.abs(b).max() for b in theirs)
    return max(np.abs(a - b).max() for a, b in zip(ours, theirs)) / scale


@pytest.mark.parametrize("case,first_order,steps,dense", [
    ("sinusoid_mlp", False, 1, "auto"), ("sinusoid_mlp", True, 1, "auto"),
    ("sinusoid_mlp", False, 2, "low_rank"), ("sinusoid_mlp", True, 2, "low_rank"),
    ("conv_batch_norm", False, 2, "auto"), ("conv_batch_norm", True, 1, "auto"),
])
def test_xla_meta_gradient_equals_the_graphs(case, first_order, steps, dense):
    """d/d theta sum_T L_T(f_theta'_T) (eq. 1), theta' after `steps` inner steps, compiled by XLA
    equals the graph's; for the conv net second order this needs batched_forward._window (TF's
    XLA gradient of Slice has no gradient itself); dense='low_rank': the factored dense
    kernels and their zero taps compile too."""
    graph, xla, batch = _learners(case, first_order, steps, dense=dense)
    compiled = tf.function(xla.meta_gradients, jit_compile=True, autograph=False)
    scores_g, grads_g = graph.meta_gradients(batch.support, batch.query)
    scores_x, grads_x = compiled(batch.support, batch.query)
    assert _relative(grads_x, grads_g) < TOLERANCE
    assert _relative(scores_x, scores_g) < TOLERANCE


def test_xla_train_pretrain_and_evaluate_equal_the_graphs():
    """The three compiled entry points: the Adam meta-update, the pretrained baseline's step and
    the test's per-task scores after 1..3 steps (its while loop compiled). One inner step in
    training: the meta-gradient through two is compared above, and each compile here costs
    seconds."""
    graph, xla, batch = _learners("conv_batch_norm", steps=1)
    for learner in (graph, xla):
        learner.train_step(batch.support, batch.query)
        learner.pretrain_step(batch.support)
    assert _relative(xla.variables, graph.variables) < TOLERANCE
    assert _relative(xla.evaluate(batch.support, batch.query, 3), graph.evaluate(batch.support, batch.query, 3)) \
        < TOLERANCE


def test_xla_refuses_grouped_convolutions():
    """XLA treats a grouped convolution's inputs as compile-time constants and recompiles at
    every call: refused at construction, by name."""
    with pytest.raises(ValueError, match="grouped"):
        MetaLearner(_tiny_conv(), losses.summed_cross_entropy(2), update_lr=0.1, num_inner_steps=1,
                    conv="grouped", jit_compile=True)


def test_xla_refuses_only_the_second_order_meta_step_through_max_pool():
    """XLA's second derivative of max-pool (MaxPoolGradGrad) finds each window's maximum from the
    top 16 bits of the input: measured 2e-2 off the float64 meta-gradient in float32 (the graph:
    1e-6). A second-order learner refuses its meta-step (at the first trace, by name); its test
    adaptation and pretraining take first derivatives only, compile, and adapt as the graph does
    (float64); a first-order learner's meta-step compiles."""
    def make(first_order, jit_compile):
        return MetaLearner(_tiny_conv(max_pool=True), losses.summed_cross_entropy(2), update_lr=0.1,
                           num_inner_steps=1, first_order=first_order, classification=True, jit_compile=jit_compile)
    batch = _image_batch((16, 16, 2))
    support, query = batch.support, batch.query
    second = make(first_order=False, jit_compile=True)
    with pytest.raises(ValueError, match="second derivative of max-pool"):
        second.train_step(support, query)
    graph = make(first_order=False, jit_compile=False)
    assert _relative(second.evaluate(support, query, 2), graph.evaluate(support, query, 2)) < TOLERANCE
    second.pretrain_step(support)
    make(first_order=True, jit_compile=True).train_step(support, query)


def test_build_learner_compiles_the_steps_it_is_asked_to():
    """jit_compile reaches the tf.functions (which keep it as `_jit_compile`): without this
    check every XLA-vs-graph comparison here would also pass with the flag dropped on the way."""
    from maml_tf import experiment

    for jit in (False, True):
        learner = experiment.build_learner(experiment.build_model("sinusoid", norm="None"), "sinusoid",
                                           update_batch_size=5, update_lr=0.01, num_inner_steps=1, jit_compile=jit)
        assert learner.train_step._jit_compile is jit and learner.pretrain_step._jit_compile is jit
        assert learner._compiled_evaluate_tasks._jit_compile is jit


def test_distributed_learner_refuses_an_xla_learner():
    """DistributedLearner builds its own graph steps: an XLA learner would silently run uncompiled."""
    from maml_tf.distributed import DistributedLearner

    learner = MetaLearner(_mlp(), losses.mse, update_lr=0.1, num_inner_steps=1, jit_compile=True)
    with pytest.raises(ValueError, match="without jit_compile"):
        DistributedLearner(learner, tf.distribute.get_strategy())


def test_calibration_under_xla_leaves_grouped_out(monkeypatch):
    """calibrate_convs(jit_compile=True) times only the methods XLA compiles once."""
    seen = []
    monkeypatch.setattr(batched_forward, "_fastest_method",
                        lambda layer, tasks, sizes, candidates, *rest: seen.append(candidates) or candidates[0])
    batched_forward.calibrate_convs(_tiny_conv(), tasks=2, examples=3, jit_compile=True)
    assert seen and all("grouped" not in c and "im2col" in c for c in seen)


def test_losses_score_each_task_of_a_batch_as_a_loop_would():
    """mse, the summed cross-entropy and accuracy reduce over a task's examples only: on
    [tasks, examples, ...] they equal the one-task values stacked (the original's per-task
    map_fn)."""
    rng = np.random.default_rng(0)
    predictions, targets = rng.normal(size=(3, 4, 1)), rng.normal(size=(3, 4, 1))
    logits, labels = rng.normal(size=(3, 6, 5)), np.eye(5)[rng.integers(0, 5, (3, 6))]
    cross_entropy = losses.summed_cross_entropy(2)
    for score, a, b in [(losses.mse, predictions, targets), (cross_entropy, logits, labels),
                        (losses.accuracy, logits, labels)]:
        batched = score(tf.constant(a), tf.constant(b)).numpy()
        assert batched.shape == (3,)
        np.testing.assert_allclose(batched, [score(tf.constant(a[t]), tf.constant(b[t])).numpy() for t in range(3)],
                                   rtol=1e-14)
    np.testing.assert_allclose(losses.mse(tf.constant(predictions[0]), tf.constant(targets[0])),
                               np.mean((predictions[0].ravel() - targets[0].ravel()) ** 2), rtol=1e-14)
    assert losses.zero_accuracy(tf.constant(predictions), tf.constant(targets)).shape == (3,)


def test_mse_refuses_mismatched_shapes():
    """[n, 1] predictions against [n] labels would broadcast to [n, n] and give a wrong loss."""
    with pytest.raises(ValueError, match="must have one shape"):
        losses.mse(tf.zeros([4, 1]), tf.zeros([4]))


@pytest.mark.parametrize("flag,message", [
    ("--distribute=mirrored", "--jit_compile compiles the single-device steps only: not with --distribute"),
    ("--conv_method=grouped", "--jit_compile: XLA recompiles grouped convolutions at every step; use another "
                              "--conv_method"),
    ("--datasource=miniimagenet --max_pool --num_filters=32",
     "--jit_compile: meta-training with --max_pool needs --stop_grad: XLA's second derivative of max-pool is "
     "accurate to bfloat16 only (and XLA was slower on MiniImagenet anyway)"),
])
def test_cli_refuses_what_xla_cannot_compile_in_one_line(tmp_path, repo_root, flag, message):
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--jit_compile", *flag.split()],
                   repo_root)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(message)


@pytest.mark.parametrize("phase", ["--train=False", "--metatrain_iterations=0 --pretrain_iterations=5"])
def test_cli_compiles_what_takes_first_derivatives_of_max_pool(tmp_path, repo_root, phase):
    """Testing and pretraining a max-pool net take first derivatives only: --jit_compile is not
    refused there (the run goes on to look for its data, which this test does not provide)."""
    result = run_main(["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}", "--jit_compile",
                       "--datasource=miniimagenet", "--max_pool", "--num_filters=32", *phase.split()], repo_root)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no miniImagenet folder" in result.stderr.strip().splitlines()[-1]


def test_cli_trains_and_tests_with_xla(tmp_path, repo_root):
    """The paper's sinusoid command with --jit_compile trains, saves and tests end to end; the
    test's numbers equal those of the same checkpoint tested without XLA (float32 round-off)."""
    common = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}"]
    trained = run_main(common + ["--jit_compile", "--metatrain_iterations=20"], repo_root)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert "Steps compiled by XLA (--jit_compile)" in trained.stdout + trained.stderr
    results = []
    for jit in ("--jit_compile", "--nojit_compile"):
        tested = run_main(common + [jit, "--train=False", "--num_test_tasks=5", "--update_batch_size=5",
                                 "--train_update_batch_size=10"], repo_root)
        assert tested.returncode == 0, tested.stderr[-2000:]
        assert ("Steps compiled by XLA" in tested.stdout + tested.stderr) == (jit == "--jit_compile")
        csv = next(tmp_path.rglob("test_ubs5_stepsize0.01.csv"))
        results.append(np.loadtxt(csv, delimiter=",", skiprows=1))
        csv.unlink()
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)
