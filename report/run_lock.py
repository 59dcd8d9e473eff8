"""One writer per run directory: an advisory lock the kernel drops when its process dies."""
import fcntl
import os
import socket

LOCK_FILE = ".lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """`with RunLock(run_dir):` holds `run_dir/.lock` (flock, exclusive, non-blocking) for the
    block. A second process gets RunLockedError naming the holder (pid and host written in the
    file). A lock left by a killed process never blocks: the kernel releases a flock with its
    process, so only the stale text remains, which the next holder overwrites. (On a network
    file system the lock holds across hosts only where its locks do: NFS with lockd, not
    `nolock` or `local_lock`.)"""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_FILE)
        self._fd = None

    def __enter__(self):
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        except BlockingIOError:
            text = os.read(fd, 200).decode(errors="replace").strip()
            os.close(fd)
            holder = text.splitlines()[0] if text else "another process"
            raise RunLockedError(f"{self.run_dir} is being written by {holder}; wait for it to finish or stop it "
                                 f"(one writer per run directory)") from None
        except OSError as e:  # e.g. a network file system without locks (ENOLCK)
            os.close(fd)
            raise OSError(f"cannot lock {self.path} (one writer per run directory): {e.strerror or e}") from None
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (removing it would race a new holder)
            self._fd = None
        return False
