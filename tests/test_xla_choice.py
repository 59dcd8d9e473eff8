"""`--jit_compile` unset: a long training run times its step as a graph and under XLA on this
machine and keeps XLA if it is more than 5 % faster (`maml_tf.xla_choice`, `maml_tf.main`);
shorter runs, tests and what XLA refuses run graphs without timing."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

SINE_RUN = "cls_5.mbs_25.ubs_10.numstep1.updatelr0.01nonorm"


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _FakeLearner:
    """A learner whose step takes `seconds` on the fake clock (the first call, its trace, `trace`)."""

    def __init__(self, clock, seconds, trace=100.0):
        self.clock, self.seconds, self.trace, self.calls = clock, seconds, trace, 0

    def step(self):
        self.clock.now += self.trace if self.calls == 0 else self.seconds
        self.calls += 1
        return []


def _timing(graph_seconds, xla_seconds, **options):
    from maml_tf import xla_choice

    clock = _FakeClock()
    learners = {False: _FakeLearner(clock, graph_seconds), True: _FakeLearner(clock, xla_seconds)}
    timing = xla_choice.time_graph_and_xla(learners.__getitem__, lambda learner: learner.step(), clock=clock,
                                           **options)
    return timing, learners


@pytest.mark.parametrize("graph_seconds,xla_seconds,use_xla", [
    (0.2, 0.1, True), (0.1, 0.2, False), (0.1, 0.094, True), (0.1, 0.096, False), (0.1, 0.1, False)])
def test_the_faster_step_is_chosen_from_the_timed_calls_only(graph_seconds, xla_seconds, use_xla):
    """The medians of the timed calls decide, XLA only when more than XLA_MARGIN (5 %) faster
    (a tie keeps the graphs); the first call of each (trace, XLA compile: 100 s here) is not
    timed."""
    timing, learners = _timing(graph_seconds, xla_seconds)
    assert timing.use_xla is use_xla and timing.error is None
    assert (timing.graph_seconds, timing.xla_seconds) == pytest.approx((graph_seconds, xla_seconds))
    assert learners[False].calls == learners[True].calls


def test_short_steps_are_timed_more_often_up_to_a_cap():
    """At least `rounds` calls each, more until `min_seconds` were timed, at most `max_rounds`."""
    _, slow = _timing(2.0, 1.0, rounds=3, min_seconds=1.0)
    _, quick = _timing(0.02, 0.01, rounds=3, min_seconds=1.0)
    _, tiny = _timing(1e-6, 1e-6, rounds=3, min_seconds=1.0, max_rounds=50)
    assert slow[True].calls == 1 + 3
    assert quick[True].calls == 1 + 34  # 34 rounds of 0.03 s reach 1 s
    assert tiny[True].calls == 1 + 50


@pytest.mark.parametrize("failure", ["build", "run"])
def test_xla_failing_leaves_the_graph_with_the_reason(failure):
    """A configuration XLA refuses (ValueError) or cannot compile (an OpError at the first
    call) keeps the graph, with the error's first line."""
    import tensorflow as tf

    from maml_tf import xla_choice

    clock = _FakeClock()
    graph = _FakeLearner(clock, 0.1)

    def build(jit_compile):
        if jit_compile and failure == "build":
            raise ValueError("jit_compile: refused here\nsecond line")
        return graph if not jit_compile else "xla"

    def run(learner):
        if learner == "xla":
            raise tf.errors.InvalidArgumentError(None, None, "XLA cannot compile op Foo\nmore")
        return learner.step()

    timing = xla_choice.time_graph_and_xla(build, run, clock=clock)
    assert timing.use_xla is False and timing.xla_seconds is None and timing.graph_seconds == pytest.approx(0.1)
    assert timing.error == ("jit_compile: refused here" if failure == "build" else "XLA cannot compile op Foo")


def test_real_learners_are_timed_on_copies_that_leave_the_model_alone():
    """Timing the real sinusoid meta-step both ways (as maml_tf.main does, on clones) gives two
    positive medians and chooses the smaller; the model's weights are untouched."""
    import keras

    from maml_tf import experiment, xla_choice

    keras.utils.set_random_seed(0)
    model = experiment.build_model("sinusoid", num_classes=1, norm="None")
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (4, 20, 1)).astype(np.float32)
    y = np.sin(x)

    def build(jit_compile):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return experiment.build_learner(copy, "sinusoid", update_batch_size=10, update_lr=0.01, num_inner_steps=1,
                                        jit_compile=jit_compile)

    timing = xla_choice.time_graph_and_xla(build, lambda learner: learner.train_step(
        (x[:, :10], y[:, :10]), (x[:, 10:], y[:, 10:])), rounds=2, min_seconds=0.0)
    assert timing.graph_seconds > 0 and timing.xla_seconds > 0 and timing.error is None
    assert timing.use_xla is (timing.xla_seconds < (1 - xla_choice.XLA_MARGIN) * timing.graph_seconds)
    for b, a in zip(before, model.get_weights()):
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("settings,reason", [
    (dict(iterations=1000, distribute="none", conv_method="auto", refused=False), None),
    (dict(iterations=999, distribute="none", conv_method="auto", refused=False), "fewer than 1000 iterations"),
    (dict(iterations=60000, distribute="mirrored", conv_method="auto", refused=False), "--distribute"),
    (dict(iterations=60000, distribute="none", conv_method="grouped", refused=False), "--conv_method=grouped"),
    (dict(iterations=60000, distribute="none", conv_method="auto", refused=True),
     "second-order meta-training through max-pool"),
])
def test_what_runs_graphs_without_timing(settings, reason):
    """Timing pays only on long runs, and only where XLA may run the step at all."""
    from maml_tf.main import xla_left_off

    assert xla_left_off(**settings) == reason


def test_cli_times_a_long_run_and_records_the_choice(tmp_path, repo_root):
    """Unset --jit_compile on the paper's sinusoid command: a 1000-iteration run prints both
    step times and its choice before training starts, and run_info.json's start records both
    (the run is stopped by SIGTERM once training starts). A shorter run times nothing:
    tests/test_training.py's CLI test."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, "-m", "maml_tf.main", "--flagfile=flags/sinusoid.flags",
                                f"--logdir={tmp_path}", "--metatrain_iterations=1000"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=repo_root, env=env)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Done initializing"):
            process.send_signal(signal.SIGTERM)
            break
    _, err = process.communicate(timeout=120)
    assert lines[-1:] == ["Done initializing, starting training."], err[-2000:]
    line = next(line for line in lines if line.startswith("meta-step: "))
    (start,) = json.loads((tmp_path / SINE_RUN / "run_info.json").read_text())["starts"]
    graph_ms, xla_ms = start["step_ms_graph_xla"]
    chosen = start["jit_compile"]
    assert chosen is (xla_ms < 0.95 * graph_ms) or abs(xla_ms - 0.95 * graph_ms) < 0.1  # (ms rounded to 0.1)
    assert line == (f"meta-step: {graph_ms} ms as a graph, {xla_ms} ms compiled by XLA: "
                    + ("the steps are compiled by XLA" if chosen else "the steps run as graphs"))
    assert ("Steps compiled by XLA (chosen by timing): the first step of each shape compiles first." in lines) is chosen
