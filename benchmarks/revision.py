"""Benchmarks that compare this tree with another git revision of the repository: the revision
checked out into a temporary worktree, and a worker function run in a fresh process of either
tree, which reports its result as the JSON of a `RESULT ` line (`report`)."""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULT = "RESULT "


@contextlib.contextmanager
def worktree(revision):
    """The path of a temporary detached worktree of `revision`, removed on exit. SystemExit naming
    --baseline if git cannot check it out."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "baseline")
        added = subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "-q", path, revision],
                               capture_output=True, text=True)
        if added.returncode:
            sys.exit(f"--baseline: git cannot check out {revision!r}: {added.stderr.strip()}")
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", path], check=False)


def run_worker(tree, module, function, *args):
    """`module.function(*args)` (`module` a script of benchmarks/, `args` literals) in a fresh
    process whose imports of the project resolve in `tree`; returns what it `report`ed. SystemExit
    with the end of its stderr if it fails."""
    code = (f"import sys; sys.path.insert(0, {tree!r}); sys.path.insert(1, {HERE!r}); "
            f"import {module}; {module}.{function}(*{args!r})")
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith(RESULT)]
    if out.returncode or not lines:
        sys.exit(f"{module}: the run in {tree} failed:\n{out.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT):])


def report(result):
    """In a worker: hand `result` (JSON-serialisable) to `run_worker`."""
    print(RESULT + json.dumps(result), flush=True)


def positive_int(text):
    """argparse type: an integer of at least 1 (argparse names the flag in its one-line error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text!r}")
    return value


def positive_ints(text):
    """argparse type: comma-separated distinct integers of at least 1, in the order given."""
    values = [positive_int(part) for part in text.split(",")]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct values, got {text!r}")
    return values
