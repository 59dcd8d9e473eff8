"""benchmarks/torch_maml.py, the PyTorch peer benchmarks/meta_step.py times ours against, computes
our meta-gradient: run through the benchmark's own check (`meta_step.py --check`), which compares
it with `MetaLearner.meta_gradients` from the same weights on the timed inputs.

torch is an optional benchmark dependency (`pip install -e .[bench]`), absent in CI: the tests
are slow-marked and skip without it.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(REPO, "benchmarks")


def _check(config, order):
    """`meta_step.py --check=config:order` in a fresh process (as the benchmark runs it): its
    result dict."""
    done = subprocess.run([sys.executable, os.path.join(BENCHMARKS, "meta_step.py"), f"--check={config}:{order}"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("order", ["second", "first"])
@pytest.mark.parametrize("config", ["sinusoid", "omniglot_5way_1shot"])
def test_peer_meta_gradient_is_ours(config, order):
    pytest.importorskip("torch")
    result = _check(config, order)
    assert result["first_order"] is (order == "first"), result  # (the peer takes its order from ours)
    for variant in ("vmap", "loop"):
        # float64: the same function (observed 1e-16 to 1e-14)
        assert result["float64"][variant] < 1e-10, result
        assert result["agrees"][variant], result
    if config == "sinusoid":
        # A 1-40-40-1 MLP on 80 points a task: no ReLU gate near zero for round-off to flip, so
        # float32 agrees to round-off too (observed 1e-8 to 1e-7, ours 1e-8).
        assert max(result["float32"].values()) < 1e-5, result


@pytest.mark.slow
def test_check_catches_a_peer_with_another_inner_step():
    """The check is not vacuous: a peer whose alpha is 1 % off disagrees."""
    pytest.importorskip("torch")
    sys.path.insert(0, BENCHMARKS)
    import keras
    import torch_maml

    from maml_tf import experiment

    torch_maml.configure(2)
    config = ("omniglot", 5, 4, 1, 1, 1, 0.4, {})
    batch_rng = np.random.default_rng(0)
    batch = (batch_rng.random((4, 5, 28, 28, 1), dtype=np.float32), np.tile(np.eye(5, dtype=np.float32), (4, 1, 1)),
             batch_rng.random((4, 5, 28, 28, 1), dtype=np.float32), np.tile(np.eye(5, dtype=np.float32), (4, 1, 1)))
    learners = []
    for dtype in ("float32", "float64"):
        keras.utils.set_random_seed(0)
        model = experiment.build_model("omniglot", num_classes=5, dtype=dtype)
        if learners:
            for variable, source in zip(model.trainable_variables, learners[0].variables):
                variable.assign(source.numpy().astype(dtype))
        learners.append(experiment.build_learner(model, "omniglot", update_batch_size=1, update_lr=0.4,
                                                 num_inner_steps=1))
    assert all(torch_maml.compare_with_ours(config, *learners, batch)["agrees"].values())
    wrong = config[:6] + (0.404,) + config[7:]
    result = torch_maml.compare_with_ours(wrong, *learners, batch)
    assert not any(result["agrees"].values()), result


def test_packages_never_import_torch():
    """torch is a benchmark dependency only: no module of maml_tf, rl or report imports it."""
    import re

    pattern = re.compile(r"^\s*(import|from)\s+torch\b", re.MULTILINE)
    offending = []
    for package in ("maml_tf", "rl", "report"):
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith(".py"):
                    with open(os.path.join(folder, name), encoding="utf-8") as f:
                        if pattern.search(f.read()):
                            offending.append(os.path.relpath(os.path.join(folder, name), REPO))
    assert not offending


@pytest.mark.slow
@pytest.mark.parametrize("package", ["maml_tf", "rl", "report"])
def test_importing_the_packages_loads_no_torch(package):
    """Nor does anything they import, where torch is installed: every module of the package
    imported in a fresh process (entry points that define the same absl flags as one imported
    before stop at that definition; their imports have run)."""
    pytest.importorskip("torch")
    code = (f"import importlib, pkgutil, sys\n"
            f"from absl.flags import DuplicateFlagError\n"
            f"for info in pkgutil.walk_packages(importlib.import_module({package!r}).__path__, {package + '.'!r}):\n"
            f"    try:\n"
            f"        importlib.import_module(info.name)\n"
            f"    except DuplicateFlagError:\n"
            f"        pass\n"
            f"print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
