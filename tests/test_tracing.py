"""Our compiled functions trace without AutoGraph (benchmarks/README.md, "Start-up: tracing without AutoGraph"):
no step holds data-dependent Python control flow, so AutoGraph's conversion only costs time."""
import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("maml_tf", "rl", "report")


def _is_tf_function(node):
    return (isinstance(node, ast.Attribute) and node.attr == "function" and isinstance(node.value, ast.Name)
            and node.value.id == "tf")


def _tf_function_uses(path):
    """(line, {keyword: value node}) of every use of `tf.function` in a source file: its keywords
    where it is called (`tf.function(f, ...)`, `@tf.function(...)`), None where it is not (a bare
    `@tf.function`, or passed on), which can then not say autograph=False."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    calls = {id(node.func): node for node in ast.walk(tree) if isinstance(node, ast.Call)}
    return [(node.lineno, {k.arg: k.value for k in calls[id(node)].keywords} if id(node) in calls else None)
            for node in ast.walk(tree) if _is_tf_function(node)]


def test_every_library_tf_function_is_built_without_autograph():
    """Each use of `tf.function` in maml_tf, rl and report is a call passing autograph=False (a
    literal False; a bare `@tf.function` fails), so that a new step does not bring back the
    conversion (the first train_step 1.35-5.7x slower to be ready with it on the AVX2 EPYC)."""
    calls, missing = 0, []
    for package in PACKAGES:
        for root, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    for line, keywords in _tf_function_uses(path):
                        calls += 1
                        value = (keywords or {}).get("autograph")
                        if not (isinstance(value, ast.Constant) and value.value is False):
                            missing.append(f"{os.path.relpath(path, REPO)}:{line}")
    assert calls >= 20, calls  # the scan found the library's functions
    assert not missing, missing


def test_meta_learner_steps_are_traced_without_autograph():
    """The tf.functions a MetaLearner runs keep autograph=False (TensorFlow stores it as
    `_autograph`), with and without XLA, and a step traced that way still runs."""
    import numpy as np

    from maml_tf import experiment

    learners = [experiment.build_learner(experiment.build_model("sinusoid", norm="None"), "sinusoid",
                                         update_batch_size=5, update_lr=0.01, num_inner_steps=1, jit_compile=jit)
                for jit in (True, False)]
    for learner in learners:
        for function in (learner.train_step, learner.pretrain_step, learner._compiled_evaluate_tasks):
            assert function._autograph is False
    x = np.linspace(-1, 1, 20, dtype=np.float32).reshape(2, 10, 1)
    scores = learner.train_step((x[:, :5], np.sin(x[:, :5])), (x[:, 5:], np.sin(x[:, 5:])))
    assert np.isfinite(float(scores.support_loss))


@pytest.mark.slow
@pytest.mark.parametrize("compare", ["autograph", "loop"])
def test_the_trace_time_benchmark_prints_both_settings(compare):
    """benchmarks/trace_time.py times AutoGraph off and on, or the evaluation's while loop and its
    steps unrolled, in fresh processes (a worker whose traced function's setting differs from
    the one asked for stops the run): one sinusoid row whose ratios are the quotients of its
    own cells."""
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "trace_time.py"), "--configs=sinusoid",
                           "--orders=first", "--repeats=1", f"--compare={compare}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    row = [line for line in done.stdout.splitlines() if line.startswith("| sinusoid | first |")][-1]
    cells = [c.strip() for c in row.strip("|").split("|")][2:]
    assert len(cells) == 6
    for off, on, ratio in (cells[0:3], cells[3:6]):
        assert float(off) > 0 and float(on) > 0
        assert float(ratio.rstrip("x")) == pytest.approx(float(on) / float(off), rel=0.2, abs=0.1)  # cells rounded


@pytest.mark.slow
def test_the_evaluation_benchmark_times_the_loop_against_the_unrolled_steps():
    """benchmarks/evaluation.py --unrolled_rounds prints a graph row and a "graph, unrolled" row per
    tasks-per-call, both with rows equal to one task at a time (sinusoid losses: the same ops)."""
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "evaluation.py"), "--configs=sinusoid",
                           "--tasks=2", "--per_call=1,2", "--unrolled_rounds=1"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in done.stdout.splitlines()
            if line.startswith("| sinusoid |")]
    assert [(r[1], r[2]) for r in rows] == [("graph", "1"), ("graph, unrolled", "1"), ("graph", "2"),
                                            ("graph, unrolled", "2")]
    assert all(float(r[3]) > 0 and float(r[-1]) < 1e-5 for r in rows), rows
