"""Pieces shared by the data_prep scripts: one-line errors and all-or-nothing outputs."""
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from report.console import exit_with_error

PREP_INFO = "PREP_INFO.json"  # written inside each prepared dataset folder


class PrepError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


@contextlib.contextmanager
def atomic_directory(final: Path):
    """Yield a temporary folder next to `final`, renamed to `final` only on success.

    Living in the same parent keeps the rename atomic (same file system), so an
    interrupted or failed run never leaves a half-written dataset under the final name.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        try:
            os.rename(tmp, final)
        except OSError as e:
            raise PrepError(f"could not move the prepared data to {final}: {e.strerror}") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_prep_info(folder: Path, info: dict) -> None:
    (folder / PREP_INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def read_prep_info(folder: Path) -> dict:
    path = folder / PREP_INFO
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PrepError(f"{folder} exists but has no readable {PREP_INFO} (not made by this "
                        f"script, or interrupted); delete it and rerun") from e


def run_main(prepare, prog: str) -> None:
    """Call `prepare()`; turn expected failures into `prog: error: ...` and exit status 1."""
    try:
        prepare()
    except PrepError as e:
        _fail(prog, str(e))
    except OSError as e:  # disk full, permissions, ...: still one line, naming the file
        where = f" ({e.filename})" if e.filename else ""
        _fail(prog, f"{e.strerror or e}{where}")
    except KeyboardInterrupt:
        _fail(prog, "interrupted; nothing was written")


def _fail(prog: str, message: str) -> None:
    exit_with_error(prog, message)
