"""What entry points print: durations, and the one style of command-line error."""
import sys


def format_duration(seconds):
    """'1h02m03s' for 3723 seconds (negative and fractional seconds round down to whole)."""
    seconds = max(int(seconds), 0)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{seconds % 60:02d}s"


def exit_with_error(program, message):
    """End the process with status 1 and the one-line message `<program>: error: <message>`."""
    sys.exit(f"{program}: error: {message}")
