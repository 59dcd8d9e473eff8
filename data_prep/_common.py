"""Pieces shared by the data_prep scripts: one-line errors, all-or-nothing outputs, and the
content check of a prepared folder (a SHA256SUMS manifest written at preparation)."""
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

from report.console import ProgressLine, exit_with_error
from report.files import atomic_write_text, sha256_file
from report.stop import EXIT_STATUS, Interrupted, interrupt_where_it_is

PREP_INFO = "PREP_INFO.json"  # written inside each prepared dataset folder
MANIFEST = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` format: one "<sha256>  <relative path>" a line

log = logging.getLogger(__name__)


class PrepError(Exception):
    """A problem with the user's input, reported as one line without a traceback."""


def user_path(path) -> Path:
    """A path flag as a Path, with a leading `~` expanded (the shell does not expand `--x=~/y`)."""
    return Path(os.path.expanduser(os.fspath(path)))


def _temp_prefix(final: Path) -> str:
    # Host and process id in the name tell a later run whether its owner can still be alive.
    return f".{final.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def remove_stale_temporaries(final: Path) -> list:
    """Remove the temporary folders that killed runs of this host left next to `final` (a live
    run's folder is kept). Returns the removed paths."""
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.tmp-{re.escape(socket.gethostname())}-(\d+)-")
    removed = []
    if not final.parent.is_dir():
        return removed
    for entry in final.parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def atomic_directory(final: Path):
    """Yield a temporary folder next to `final`, renamed to `final` only on success.

    Living in the same parent keeps the rename atomic (same file system), so an
    interrupted or failed run never leaves a half-written dataset under the final name;
    what a killed run left is removed by the next one (`remove_stale_temporaries`).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(final), dir=final.parent))
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


def prepared_files(folder: Path) -> list:
    """Relative posix paths of the data files of a prepared folder (not PREP_INFO or MANIFEST)."""
    found = []
    for directory, _, names in os.walk(folder):
        rel_dir = os.path.relpath(directory, folder)
        for name in names:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
            if rel not in (PREP_INFO, MANIFEST):
                found.append(rel)
    return sorted(found)


def write_manifest(folder: Path, files) -> None:
    """Record the sha256 of each of `files` (relative paths) as folder/SHA256SUMS."""
    files = sorted(files)
    progress = ProgressLine(len(files), f"prepared files hashed for {MANIFEST}", print_fn=log.info)
    lines = []
    for done, rel in enumerate(files, start=1):
        lines.append(f"{sha256_file(folder / rel)}  {rel}\n")
        progress.update(done)
    atomic_write_text(folder / MANIFEST, "".join(lines))


def read_manifest(folder: Path):
    """{relative path: sha256} of folder/SHA256SUMS, or None if the folder has none."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    manifest = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PrepError(f"{path} is unreadable ({e}); delete {folder} and rerun") from e
    for number, line in enumerate(lines, start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest) or not rel:
            raise PrepError(f"{path}:{number} is not a '<sha256>  <file>' line; delete {folder} and rerun")
        manifest[rel] = digest
    return manifest


def check_manifest(folder: Path, manifest: dict, files) -> None:
    """Every prepared file is the one recorded at preparation: same names, same sha256.
    The first difference is a PrepError naming the file and saying what to do."""
    todo = f"delete {folder} and rerun"
    extra = sorted(set(files) - set(manifest))
    if extra:
        raise PrepError(f"{folder / extra[0]} was not written by the preparation ({MANIFEST} does not "
                        f"list it); remove it, or {todo}")
    progress = ProgressLine(len(manifest), f"prepared files checked against {MANIFEST}", print_fn=log.info)
    for done, (rel, digest) in enumerate(manifest.items(), start=1):
        path = folder / rel
        try:
            size = path.stat().st_size
            actual = sha256_file(path)
        except FileNotFoundError:
            raise PrepError(f"{path} is missing; {todo}") from None
        if size == 0:
            raise PrepError(f"{path} is empty (0 bytes); {todo}")
        if actual != digest:
            raise PrepError(f"{path} is damaged (its sha256 differs from the one {MANIFEST} recorded "
                            f"when it was prepared); {todo}")
        progress.update(done)


def check_images(folder: Path, files, image_format, mode, size) -> None:
    """Every file decodes as an `image_format` image of `mode` and `size` (slower than the
    manifest; used at preparation and for folders prepared before manifests existed)."""
    from PIL import Image

    progress = ProgressLine(len(files), "prepared images decoded", print_fn=log.info)
    for done, rel in enumerate(files, start=1):
        path = folder / rel
        try:
            if path.stat().st_size == 0:
                raise PrepError(f"{path} is empty (0 bytes); delete {folder} and rerun")
            with Image.open(path) as image:
                image.load()
                got = (image.format, image.mode, image.size)
        except (OSError, SyntaxError, ValueError) as e:
            raise PrepError(f"{path} does not decode ({e}); delete {folder} and rerun") from e
        if got != (image_format, mode, size):
            raise PrepError(f"{path} is a {got[0]} image of mode {got[1]} and size {got[2][0]}x{got[2][1]}, "
                            f"expected {image_format} {mode} {size[0]}x{size[1]}; delete {folder} and rerun")
        progress.update(done)


def verify_content(folder: Path, files, image_format, mode, size, log) -> None:
    """The content check of an already prepared folder: its manifest if it has one; a folder
    from before manifests is decoded image by image and then given its manifest."""
    manifest = read_manifest(folder)
    if manifest is not None:
        check_manifest(folder, manifest, files)
        return
    log.info("%s has no %s (prepared by an older version): checking every image", folder, MANIFEST)
    check_images(folder, files, image_format, mode, size)
    try:
        write_manifest(folder, files)
    except OSError as e:  # a read-only dataset stays usable; it is checked this way next time too
        log.warning("could not write %s: %s", folder / MANIFEST, e.strerror or e)


def run_main(prepare, prog: str) -> None:
    """Call `prepare()`; turn expected failures into `prog: error: ...` and exit status 1, and
    SIGINT (Ctrl-C) / SIGTERM into one line and 130 / 143, after the temporary output is
    removed (further signals are ignored meanwhile, so the cleanup is never cut short)."""
    with interrupt_where_it_is():
        try:
            prepare()
        except PrepError as e:
            _fail(prog, str(e))
        except OSError as e:  # disk full, permissions, ...: still one line, naming the file
            where = f" ({e.filename})" if e.filename else ""
            _fail(prog, f"{e.strerror or e}{where}")
        except (KeyboardInterrupt, Interrupted) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            print(f"{prog}: error: interrupted by {signal.Signals(signum).name}; nothing was written "
                  f"(rerun to prepare)", file=sys.stderr)
            sys.exit(EXIT_STATUS[signum])


def _fail(prog: str, message: str) -> None:
    exit_with_error(prog, message)
