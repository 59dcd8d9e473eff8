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
    """A learner whose step takes `seconds` on the fake clock (the first call, its trace, `trace`;
    `seconds` a list: the timed calls' durations in turn)."""

    def __init__(self, clock, seconds, trace=100.0):
        self.clock, self.seconds, self.trace, self.calls = clock, seconds, trace, 0

    def step(self):
        timed = self.seconds[self.calls - 1] if isinstance(self.seconds, list) else self.seconds
        self.clock.now += self.trace if self.calls == 0 else timed
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


@pytest.mark.parametrize("graph_seconds,xla_seconds,use_xla", [
    ([0.1, 0.1, 5.0], [0.5, 0.5, 0.5], False),  # one slow graph call: the mean would take XLA
    ([0.2, 0.2, 0.2], [0.09, 0.3, 0.3], False),  # one fast XLA call: the minimum would take XLA
    ([0.3, 0.2, 0.3], [0.05, 0.2, 5.0], True),  # medians 0.3 / 0.2; mean and maximum: the graph
])
def test_the_median_of_the_timed_calls_decides(graph_seconds, xla_seconds, use_xla):
    """An outlier call (a page fault, another process) does not decide: the median of the three
    timed calls of each does, not their mean, minimum or maximum."""
    timing, _ = _timing(graph_seconds, xla_seconds, rounds=3, min_seconds=0.0)
    assert timing.use_xla is use_xla
    assert (timing.graph_seconds, timing.xla_seconds) == pytest.approx((sorted(graph_seconds)[1],
                                                                        sorted(xla_seconds)[1]))


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


@pytest.mark.parametrize("xla_fails", [False, True])
def test_a_stop_signal_ends_the_timing_between_rounds(xla_fails):
    """`check_stop` runs after each compile and each round: a stop raised there (SIGINT /
    SIGTERM recorded by report.stop) ends the timing at once, not after all its rounds; also
    where XLA failed and the graph alone is timed."""
    from report.stop import StopRequested

    from maml_tf import xla_choice

    clock = _FakeClock()
    learners = {False: _FakeLearner(clock, 1.0), True: _FakeLearner(clock, 1.0)}
    checks = 0

    def build(jit_compile):
        if jit_compile and xla_fails:
            raise ValueError("jit_compile: refused")
        return learners[jit_compile]

    def check_stop():
        nonlocal checks
        checks += 1
        if checks == 3:  # after the graph's trace, XLA's compile (or failure), then one round
            raise StopRequested(signal.SIGTERM)

    with pytest.raises(StopRequested):
        xla_choice.time_graph_and_xla(build, lambda learner: learner.step(), clock=clock, check_stop=check_stop,
                                      rounds=10)
    assert (learners[False].calls, learners[True].calls) == ((2, 0) if xla_fails else (2, 2))


def _sinusoid_run():
    """A sinusoid model, its learner (graphs, as maml_tf.main builds it before the choice), the
    learner builder and one meta-step's runner."""
    import keras

    from maml_tf import experiment

    keras.utils.set_random_seed(0)
    model = experiment.build_model("sinusoid", num_classes=1, norm="None")
    rng = np.random.default_rng(0)
    x = rng.uniform(-5, 5, (4, 20, 1)).astype(np.float32)
    y = np.sin(x)

    def build(model, jit_compile):
        return experiment.build_learner(model, "sinusoid", update_batch_size=10, update_lr=0.01, num_inner_steps=1,
                                        jit_compile=jit_compile)

    def run_step(learner):
        return learner.train_step((x[:, :10], y[:, :10]), (x[:, 10:], y[:, 10:]))

    return model, build(model, False), build, run_step


def _assert_compiled(learner, jit_compile):
    """The learner's compiled functions were remade with `jit_compile` (tf.function keeps it as
    `_jit_compile`; tests/test_jit_compile.py)."""
    assert learner.jit_compile is jit_compile
    for function in (learner.train_step, learner.pretrain_step, learner._compiled_evaluate_tasks):
        assert function._jit_compile is jit_compile


def _assert_untouched(model, learner, weights):
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert int(learner.meta_optimizer.iterations) == 0


def test_real_learners_are_timed_on_copies_then_the_run_is_compiled_the_faster_way():
    """`choose_on_copies` (what maml_tf.main runs) times the real sinusoid meta-step both ways on
    clones: two positive medians, the smaller chosen, the run's learner compiled that way
    (`learner.jit_compile`), and the run's weights and Adam state (its step count) untouched."""
    import functools

    from maml_tf import xla_choice

    model, learner, build, run_step = _sinusoid_run()
    weights = [w.copy() for w in model.get_weights()]
    timing = xla_choice.choose_on_copies(model, learner, build, run_step, timer=functools.partial(
        xla_choice.time_graph_and_xla, rounds=2, min_seconds=0.0))
    assert timing.graph_seconds > 0 and timing.xla_seconds > 0 and timing.error is None
    assert timing.use_xla is (timing.xla_seconds < (1 - xla_choice.XLA_MARGIN) * timing.graph_seconds)
    _assert_compiled(learner, timing.use_xla)
    _assert_untouched(model, learner, weights)


@pytest.mark.parametrize("use_xla", [True, False])
def test_the_choice_is_applied_to_the_run_learner(use_xla):
    """Whatever the timing chooses is what the run's learner then runs: its steps are remade
    with that `jit_compile` and step the run's model (a timer that runs each copy once and
    decides `use_xla`)."""
    from maml_tf import xla_choice

    model, learner, build, run_step = _sinusoid_run()
    weights = [w.copy() for w in model.get_weights()]

    def timer(build_copy, run_copy, check_stop):
        for jit in (False, True):
            copy = build_copy(jit)
            assert copy.jit_compile is jit and copy.model is not model
            run_copy(copy)
        return xla_choice.XlaTiming(use_xla, 0.2, 0.1 if use_xla else 0.3)

    xla_choice.choose_on_copies(model, learner, build, run_step, timer=timer)
    _assert_untouched(model, learner, weights)
    _assert_compiled(learner, use_xla)
    run_step(learner)
    assert int(learner.meta_optimizer.iterations) == 1
    assert any(not np.array_equal(before, after) for before, after in zip(weights, model.get_weights()))


@pytest.mark.parametrize("settings,reason", [
    (dict(total_iterations=1000, start=0, distribute="none", grouped=False, refused=False), None),
    (dict(total_iterations=999, start=0, distribute="none", grouped=False, refused=False),
     "fewer than 1000 iterations left"),
    (dict(total_iterations=1020, start=20, distribute="none", grouped=False, refused=False), None),
    (dict(total_iterations=1020, start=21, distribute="none", grouped=False, refused=False),
     "fewer than 1000 iterations left"),
    (dict(total_iterations=60000, start=0, distribute="mirrored", grouped=False, refused=False), "--distribute"),
    (dict(total_iterations=60000, start=0, distribute="none", grouped=True, refused=False), "--conv_method=grouped"),
    (dict(total_iterations=60000, start=0, distribute="none", grouped=False, refused=True),
     "second-order meta-training through max-pool"),
])
def test_what_runs_graphs_without_timing(settings, reason):
    """Timing pays only on long runs (counting the iterations a resumed run has left), and only
    where XLA may run the step at all."""
    from maml_tf.main import xla_left_off

    assert xla_left_off(**settings) == reason


def test_each_start_records_its_timing_and_xla_error():
    """run_info.json's `starts` entry: the speed settings, and with --jit_compile unset the two
    step times, plus XLA's error where it failed (None where it did not run)."""
    from maml_tf import xla_choice
    from maml_tf.main import start_record

    settings = {"jit_compile": False, "conv_method": "auto"}
    assert start_record(0, settings, None) == {"iteration": 0, **settings}
    assert start_record(20, settings, xla_choice.XlaTiming(False, 0.25, 0.3)) == {
        "iteration": 20, **settings, "step_ms_graph_xla": [250.0, 300.0]}
    assert start_record(0, settings, xla_choice.XlaTiming(False, 0.25, None, "XLA cannot compile op Foo")) == {
        "iteration": 0, **settings, "step_ms_graph_xla": [250.0, None], "xla_error": "XLA cannot compile op Foo"}


def test_the_stop_line_says_whether_there_is_anything_to_resume():
    """Stopped before the first iteration (during the XLA timing, or at iteration 0) nothing was
    saved, and the line says so; later it names the checkpoint to resume from."""
    from maml_tf.main import stopped_message

    assert stopped_message("SIGTERM", 0, True) == ("maml_tf.main: stopped by SIGTERM before the first iteration "
                                                   "(nothing saved); run the same command to start again")
    assert stopped_message("SIGINT", 20, True) == ("maml_tf.main: stopped by SIGINT after iteration 20 "
                                                   "(saved model-20); run the same command to resume")
    assert "(the chief saved model-20)" in stopped_message("SIGTERM", 20, False)


def _main_until(args, cwd, line_start):
    """Run maml_tf.main and SIGTERM it at the first stdout line starting with `line_start` (None:
    let it finish); (its stdout lines, stderr, exit status). Progress is line-buffered
    (report.cli), which this relies on and so proves: PYTHONUNBUFFERED is left out."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    process = subprocess.Popen([sys.executable, "-m", "maml_tf.main", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=cwd, env=env)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if line_start is not None and line.startswith(line_start):
            process.send_signal(signal.SIGTERM)
            break
    out, err = process.communicate(timeout=120)
    return lines + out.splitlines(), err, process.returncode


def test_cli_times_a_long_run_and_records_the_choice(tmp_path, repo_root):
    """Unset --jit_compile on the paper's sinusoid command: a new 1000-iteration run stopped by
    SIGTERM during the timing stops before its first iteration, saying nothing was saved
    (status 143); a 20-iteration run times nothing; resumed to 1020 (1000 left) it times,
    and stopped during the timing names model-20; resumed again it prints both step times and
    its choice before training starts, and run_info.json's start records both (stopped by
    SIGTERM once training starts)."""
    args = ["--flagfile=flags/sinusoid.flags", f"--logdir={tmp_path}"]
    lines, err, status = _main_until([*args, "--metatrain_iterations=1000"], repo_root, "Timing the meta-step")
    assert status == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == ("maml_tf.main: stopped by SIGTERM before the first iteration "
                                            "(nothing saved); run the same command to start again")
    assert not any(line.startswith(("meta-step: ", "Done initializing")) for line in lines)
    assert not list((tmp_path / SINE_RUN).glob("model-*"))

    lines, err, status = _main_until([*args, "--metatrain_iterations=20"], repo_root, None)
    assert status == 0 and (tmp_path / SINE_RUN / "model-20.index").exists(), err[-2000:]
    assert not any("Timing" in line or "XLA" in line for line in lines)

    resumed = [*args, "--metatrain_iterations=1020"]
    lines, err, status = _main_until(resumed, repo_root, "Timing the meta-step")
    assert status == 143 and err.strip().splitlines()[-1] == (
        "maml_tf.main: stopped by SIGTERM after iteration 20 (saved model-20); run the same command to resume"), err

    lines, err, status = _main_until(resumed, repo_root, "Done initializing")
    assert lines[-1:] == ["Done initializing, starting training."] and status == 143, err[-2000:]
    line = next(line for line in lines if line.startswith("meta-step: "))
    first, start = json.loads((tmp_path / SINE_RUN / "run_info.json").read_text())["starts"]
    assert first == {"iteration": 0, "pretrain_iterations": 0, "metatrain_iterations": 20, "jit_compile": False,
                     "conv_method": "auto", "dense_method": "auto", "distribute": "none"}
    assert (start["iteration"], start["metatrain_iterations"]) == (20, 1020)
    graph_ms, xla_ms = start["step_ms_graph_xla"]
    chosen = start["jit_compile"]
    assert chosen is (xla_ms < 0.95 * graph_ms) or abs(xla_ms - 0.95 * graph_ms) < 0.1  # (ms rounded to 0.1)
    assert line == (f"meta-step: {graph_ms} ms as a graph, {xla_ms} ms compiled by XLA: "
                    + ("the steps are compiled by XLA" if chosen else "the steps run as graphs"))
    assert ("Steps compiled by XLA (chosen by timing): the first step of each shape compiles first." in lines) is chosen
