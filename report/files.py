"""Outputs written whole or not at all, and the JSON records they leave read back with one-line errors."""
import contextlib
import hashlib
import json
import os
import re


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """open() for writing to a temporary file beside `path`, renamed onto it when the block
    ends without an exception (removed otherwise): a reader, or a run interrupted at any
    moment, sees the old file or the new one, never half of one."""
    if "w" not in mode:  # ("x" would promise not to replace a file: a rename onto it would)
        raise ValueError(f"atomic_open writes over `path`: mode must contain 'w', got {mode!r}")
    tmp = _temporary_name(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _temporary_name(path):
    """Where an atomic write puts `path`'s new content until it is whole (`remove_temporary_files`
    knows the pattern)."""
    return f"{path}.tmp{os.getpid()}"


def atomic_write_all(contents):
    """Write {path: bytes} as one result: every file goes to a temporary name beside its path and
    only once all are written whole are they renamed onto their paths, one after another in the
    dict's order (put the file that describes the others last). An error while writing (a full
    disk) leaves every old file as it was and no temporary one, and is an OSError naming the
    file; only a kill between two renames (microseconds) could leave old and new side by side."""
    for path in contents:  # (a rename onto a folder would fail with some files already replaced)
        if os.path.isdir(path):
            raise OSError(f"{path} could not be written: it is a directory")
    temporary = {}
    try:
        for path, data in contents.items():
            temporary[path] = _temporary_name(path)
            try:
                with open(temporary[path], "wb") as f:
                    f.write(data)
            except OSError as e:
                raise OSError(f"{path} could not be written: {e.strerror or e}") from None
        for path, tmp in temporary.items():
            os.replace(tmp, path)
    finally:
        for tmp in temporary.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def rename_aside(prefix, files, label="damaged"):
    """Rename `files` (each `prefix` followed by its own suffix, e.g. `.index`) to
    `<prefix>.<label><suffix>`, or `.<label>2`, ... where that name is taken: nothing is
    overwritten, only the file names change. Returns the new prefix; OSError if 999 are taken."""
    import glob

    for k in range(1, 1000):
        aside = f"{prefix}.{label}{'' if k == 1 else k}"
        targets = [aside + f[len(prefix):] for f in files]
        if not any(os.path.exists(t) for t in targets) and not glob.glob(glob.escape(aside) + ".*"):
            for f, t in zip(files, targets):
                os.replace(f, t)
            return aside
    raise OSError(f"could not rename {prefix} aside: 999 {label} copies are there already")


def new_dated_folder(parent):
    """Create and return a new folder `parent/<UTC time>-<pid>` (parents made as needed) for
    files kept aside: a second one in the same second gets its own name."""
    import time

    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"-{os.getpid()}"
    for k in range(1, 1000):
        folder = os.path.join(parent, stamp if k == 1 else f"{stamp}-{k}")
        try:
            os.makedirs(folder)
            return folder
        except FileExistsError:
            continue
    raise OSError(f"could not make a new folder in {parent}: 999 of this second's names are taken")


def csv_bytes(rows, line_end="\n"):
    """`rows` as csv text, UTF-8 encoded: one file's content for `atomic_write_all` (`line_end`
    "\r\n" is what Python's csv writer, and so the original's test csv, ends lines with)."""
    import csv
    import io

    text = io.StringIO(newline="")
    csv.writer(text, lineterminator=line_end).writerows(rows)
    return text.getvalue().encode("utf-8")


def row_length_error(row):
    """For a `csv.DictReader` row: None when it has as many fields as the header, else "more" or
    "fewer" (DictReader keeps the extra fields under the key None and fills missing ones with None)."""
    return "more" if None in row else "fewer" if None in row.values() else None


def first_csv_row(path):
    """The first line of a file as a csv row ([] for an empty file), or None if it is not UTF-8
    csv text: what decides a file's kind, whatever its later lines hold."""
    import csv

    try:
        with open(path, "rb") as f:
            return next(csv.reader([f.readline().decode("utf-8")]), [])
    except (UnicodeDecodeError, csv.Error):
        return None


def read_complete_text(path, remedy):
    """A result file's whole text: ValueError naming it if it is not UTF-8 or cut short (its
    last line unended, where a cut inside a number would leave another valid number)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text (byte {e.start}): damaged; {remedy}") from None
    if text and not text.endswith("\n"):
        raise ValueError(f"{path} is damaged: cut short (its last line has no end); {remedy}")
    return text


def sha256_file(path) -> str:
    """The hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path, text):
    """Write `text` (utf-8) to `path` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)


def check_writable(directory, what):
    """Create `directory` if needed and prove a file can be written there, before long work
    whose results would otherwise be lost at the end. Raises one-line OSError naming `what`."""
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".write_test{os.getpid()}")
        try:
            with open(probe, "w") as f:
                f.write("ok")
        finally:
            if os.path.exists(probe):
                os.remove(probe)
    except OSError as e:
        raise OSError(f"{what} {directory} is not writable: {e.strerror or e}") from None


def check_files_writable(paths, what):
    """Prove each of `paths` can be written the way `atomic_open` / `atomic_write_all` write it
    (its temporary name created and removed beside it: a name too long for the file system, a
    read-only folder), before long work whose results would otherwise be lost at the end.
    Raises one-line OSError naming `what` and the file; leaves the files themselves untouched."""
    for path in paths:
        if os.path.isdir(path):
            raise OSError(f"{what} {path} cannot be written: it is a directory")
        probe = _temporary_name(path)
        try:
            with open(probe, "x"):
                pass
        except OSError as e:
            raise OSError(f"{what} {path} cannot be written: {e.strerror or e}") from None
        finally:
            if os.path.exists(probe):
                os.remove(probe)


def remove_temporary_files(directory, of):
    """Remove what interrupted atomic writes left in `directory`: `<name>.tmp<process id>` files
    (as `atomic_open` makes them) of the names `of` (a list of names, or a regular expression a
    whole name must match), whose process is no longer running (a live writer's stays); never a
    folder or another name. Returns the removed names."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = re.fullmatch(r"(.+)\.tmp(\d+)", name)
        if not match or os.path.isdir(os.path.join(directory, name)) or _process_alive(int(match.group(2))):
            continue
        ours = (match.group(1) in of) if isinstance(of, (list, tuple, set)) else bool(re.fullmatch(of, match.group(1)))
        if ours:
            os.remove(os.path.join(directory, name))
            removed.append(name)
    return removed


def _process_alive(pid):
    if pid == os.getpid():  # a killed process's leftover whose pid this one now has (pid 1 in containers)
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's: alive
        pass
    return True


def read_json_object(path, remedy):
    """The JSON object (a dict) in `path`. A file cut short, with bytes that are not UTF-8 or
    JSON, or holding another JSON value is a ValueError `<path> is damaged (<why>); <remedy>`;
    a missing or unreadable file is the OSError open() raises (the caller knows what that means)."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path} is damaged ({e}); {remedy}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is damaged (it holds a JSON {type(record).__name__}, not an object); {remedy}")
    return record
