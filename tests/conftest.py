import fcntl
import os
import pathlib
import shutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import maml_tf  # noqa: E402,F401  (its oneDNN default, before anything here loads TensorFlow)

import pytest  # noqa: E402


def pytest_configure(config):
    """Two logical CPU devices for the MirroredStrategy tests (tests/test_distributed.py).
    TensorFlow allows this only before it initialises its devices, hence before collection. Ops
    without a device still run on /cpu:0, so every other test runs as before. Not in the
    pytest-xdist controller, which runs no test (and would import TensorFlow for nothing)."""
    if config.pluginmanager.hasplugin("xdist") and config.getoption("numprocesses", None) \
            and "PYTEST_XDIST_WORKER" not in os.environ:
        return
    from report.distribution import split_cpu

    split_cpu(2)


@pytest.fixture(scope="session")
def two_replica_strategy():
    """One MirroredStrategy over the two logical CPUs, shared by every test of the session: a
    second strategy made later in the same process restarts TensorFlow's collective instance
    keys, and its all-reduces then collide with the first one's in the collective executor
    ("Collective instance 100 expected ... data_type 2 but got ... 1")."""
    from report.distribution import make_strategy

    strategy = make_strategy("mirrored", cpu_replicas=2)
    assert strategy.num_replicas_in_sync == 2
    return strategy

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture()
def dead_pid():
    """The process id of a process that has ended (for temporary-file names of a killed writer)."""
    import subprocess
    import sys

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return ended.pid


@pytest.fixture(scope="session")
def repo_root():
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data():
    """`../shared/data`; its absence is a failure (CI must have it), never a skip."""
    assert SHARED_DATA.is_dir(), f"shared data folder missing: {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def omniglot_source(shared_data):
    for name in ("images_background.zip", "images_evaluation.zip"):
        assert (shared_data / "omniglot" / name).is_file(), f"shared data file missing: {shared_data / 'omniglot' / name}"
    return shared_data / "omniglot"


@pytest.fixture(scope="session")
def omniglot_prepared(omniglot_source, tmp_path_factory):
    """DATA folder holding omniglot_resized built from the real archives (about 25 s on 2 cores),
    once per test session: the pytest-xdist workers share one folder (built by whichever asks
    first, under a lock, and marked complete only once built). Tests only read it; a test that
    damages a file works on a hard-linked copy (`data_test_utils.linked_copy`)."""
    from data_prep.omniglot import prepare_omniglot

    base = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ and base.name.startswith("popen-"):
        base = base.parent  # the session's folder, above each worker's own (xdist's popen-gwN)
    data, done = base / "omniglot_data", base / "omniglot_data.complete"
    with open(base / "omniglot_data.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(data, ignore_errors=True)  # a build that did not finish
            data.mkdir()
            prepare_omniglot(omniglot_source, data)
            done.touch()
    return data


@pytest.fixture(scope="session")
def omniglot_data(omniglot_prepared):
    from maml_tf.few_shot_data import load_omniglot

    return load_omniglot(omniglot_prepared)
