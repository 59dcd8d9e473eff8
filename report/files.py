"""Outputs written whole or not at all."""
import contextlib
import os


@contextlib.contextmanager
def atomic_open(path, mode="w", **kwargs):
    """open() for writing to a temporary file beside `path`, renamed onto it when the block
    ends without an exception (removed otherwise): a reader, or a run interrupted at any
    moment, sees the old file or the new one, never half of one."""
    if not any(m in mode for m in "wx"):
        raise ValueError(f"atomic_open writes: mode must contain 'w', got {mode!r}")
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path, text):
    """Write `text` (utf-8) to `path` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(text)
