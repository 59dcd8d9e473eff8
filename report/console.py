"""What entry points print: durations, and the one style of command-line error."""
import sys


def format_duration(seconds):
    """'1h02m03s' for 3723 seconds (negative and fractional seconds round down to whole)."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def exit_with_error(program, message):
    """End the process with status 1 and the one-line message `<program>: error: <message>`."""
    sys.exit(f"{program}: error: {message}")


class ProgressLine:
    """Prints '<label> 120/600 (12.3/s, ETA 0h00m39s)' when `update(done)` is called at least
    `every_seconds` after the last line, and always at `done == total`: progress for long loops
    (the 600-task test) without flooding a log."""

    def __init__(self, total, label, print_fn=print, every_seconds=30.0, clock=None):
        import time

        self.total, self.label, self.print_fn, self.every = total, label, print_fn, every_seconds
        self.clock = clock or time.monotonic
        self.start = self.last = self.clock()

    def update(self, done):
        now = self.clock()
        if done < self.total and now - self.last < self.every:
            return
        self.last = now
        rate = done / max(now - self.start, 1e-9)
        eta = f", ETA {format_duration((self.total - done) / rate)}" if done < self.total and rate > 0 else ""
        self.print_fn(f"{self.label} {done}/{self.total} ({rate:.1f}/s{eta})")
