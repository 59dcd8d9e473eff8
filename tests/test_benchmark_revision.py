"""benchmarks/revision.py, which the against-a-revision benchmarks (rl_iteration.py,
evaluation_revision.py) run on: a worker in a fresh process of a checked-out revision, whose
project imports resolve in that revision's tree."""
import argparse
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import revision  # noqa: E402


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository of its own (the project's checkout need not be one) holding a stub
    `maml_tf` package, as `revision.REPO`."""
    root = tmp_path / "repo"
    (root / "maml_tf").mkdir(parents=True)
    (root / "maml_tf" / "__init__.py").write_text("STUB = True\n")
    # Workers reporting where `maml_tf` comes from: directly, and after importing the benchmarks'
    # own worker modules first, as their workers do.
    (root / "probe.py").write_text("import revision\n\n\ndef import_path():\n    import maml_tf\n"
                                   "    revision.report(maml_tf.__file__)\n\n\ndef main():\n"
                                   "    import evaluation_revision, rl_iteration  # noqa: F401\n    import_path()\n")
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "stub"]):
        subprocess.run(git + args, check=True)
    monkeypatch.setattr(revision, "REPO", str(root))
    return root


def test_worker_runs_in_the_revision_tree_and_reports(repo):
    """A worker started in a worktree of the revision imports that tree's `maml_tf` (a stub),
    not the installed project, and `run_worker` returns what it reported; the worktree is gone
    afterwards."""
    with revision.worktree("HEAD") as tree:
        path = revision.run_worker(tree, "probe", "import_path")
        assert path == os.path.join(tree, "maml_tf", "__init__.py")
        assert revision.run_worker(tree, "revision", "report", {"rows": [[1.0, 2.5]]}) == {"rows": [[1.0, 2.5]]}
    assert not os.path.exists(tree)
    listed = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert tree not in listed


def test_benchmark_worker_modules_leave_the_tree_first(repo):
    """Importing `evaluation_revision` and `rl_iteration` in a worker (their workers' first step)
    does not put this checkout ahead of the revision's tree: the worker still imports the stub.
    (`benchmarks/evaluation.py` inserts the repository root at import: importing it there would
    silently time this tree as the baseline.)"""
    with revision.worktree("HEAD") as tree:
        assert revision.run_worker(tree, "probe", "main") == os.path.join(tree, "maml_tf", "__init__.py")


def test_unknown_revision_is_one_line_naming_the_flag(repo):
    """A revision git cannot check out ends the benchmark with one line naming --baseline."""
    with pytest.raises(SystemExit, match="--baseline: git cannot check out 'no-such-revision-x'"):
        with revision.worktree("no-such-revision-x"):
            pass


def test_failing_worker_names_the_tree(tmp_path):
    """A worker that fails (here: no such function) ends the benchmark with the tree and its stderr."""
    with pytest.raises(SystemExit, match=r"revision: the run in .* failed:[\s\S]*no_such_function"):
        revision.run_worker(str(tmp_path), "revision", "no_such_function")


@pytest.mark.parametrize("text,expected", [("3", [3]), ("1,8,40", [1, 8, 40])])
def test_counts_parse(text, expected):
    """The benchmarks' counts read as given: one integer, or a comma-separated list in order."""
    assert revision.positive_ints(text) == expected
    assert revision.positive_int(text.split(",")[-1]) == expected[-1]


@pytest.mark.parametrize("text,reason", [("0", "at least 1, got '0'"), ("-2", "at least 1, got '-2'"),
                                         ("a", "at least 1, got 'a'"), ("", "at least 1, got ''"),
                                         ("8,8", "distinct values, got '8,8'"), ("1,,2", "at least 1, got ''")])
def test_counts_refuse_what_is_not_a_positive_count(text, reason):
    """--rounds, --iterations, --tasks and --per_call refuse zero, negatives, non-numbers and
    repeats, saying which (argparse turns the error into one line naming the flag)."""
    with pytest.raises(argparse.ArgumentTypeError, match=f"^expected (an integer of )?{reason}$"):
        revision.positive_ints(text)
