"""SIGINT / SIGTERM: a long run stops at the next safe point instead of mid-write (GracefulStop);
a program with nothing to save stops where it is, in one line (interrupt_where_it_is)."""
import contextlib
import signal

# Exit statuses of a program stopped by a signal, after saving or where it was (the shell's 128 +
# signal number).
EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequested(Exception):
    """Raised by `GracefulStop.check()` once a stop signal arrived. Whoever handles it on the way
    out may set `iteration` (where a training stopped and resumes) or `message` (the whole line
    to print)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_status = EXIT_STATUS[signum]
        self.iteration = None
        self.message = None


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised wherever the main thread is, as Python raises KeyboardInterrupt
    for SIGINT (a BaseException for the same reason: `except Exception` does not swallow it)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_status = EXIT_STATUS[signum]


@contextlib.contextmanager
def interrupt_where_it_is():
    """Within: SIGINT and SIGTERM raise Interrupted in the main thread (SIGTERM would otherwise
    end the process without a word); after the first, further ones are ignored, so the cleanup
    on the way out (temporary files removed) is not cut short. Yields a function that installs
    the handlers again, for after a library took a signal over (TensorFlow's multi-worker
    strategy installs its own SIGTERM handler when it is built). Main thread only; handlers
    restored on exit."""
    def interrupt(signum, frame):
        for s in EXIT_STATUS:
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in EXIT_STATUS}

    def install():  # (also over a signal inherited as ignored, as GracefulStop: a script's `cmd &`)
        for s in EXIT_STATUS:
            signal.signal(s, interrupt)

    install()
    try:
        yield install
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class GracefulStop:
    """`with GracefulStop() as stop:` records SIGINT and SIGTERM instead of dying at once; the
    run calls `stop.check()` where stopping is safe (between iterations), which raises
    StopRequested; the caller saves and exits with `exit_status`. A second signal while
    stopping is recorded too, never interrupting the save. Handlers are restored on exit.
    Outside the main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _record(self, signum, frame):
        self.signum = self.signum or signum

    def __enter__(self):
        try:
            for signum in EXIT_STATUS:
                self._previous[signum] = signal.signal(signum, self._record)
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def check(self):
        if self.signum is not None:
            raise StopRequested(self.signum)

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False
