"""Running an entry point: absl's app.run, with `--help` a success.

absl ends `--help`, `--helpshort`, `--helpfull` and `--helpxml` with exit status 1 (it treats
them like a usage error); shells and CI scripts read that as a failure. `run(main)` is app.run
with the help flags ending in status 0; everything else (errors in flags: status 1 with absl's
message) is unchanged.
"""
import sys

from absl import app

HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")


def help_requested(argv):
    """True if the command line (program name first) asks for help."""
    for arg in argv[1:]:
        if arg == "--":
            break
        name = arg.lstrip("-").split("=", 1)[0]
        value = arg.split("=", 1)[1].lower() if "=" in arg else "true"
        if arg.startswith("-") and name in HELP_FLAGS and value in ("true", "1", "t", "yes", "y"):
            return True
    return False


def parse_flags(argv):
    """absl's parser (`app.parse_flags_with_usage`), except that help exits with status 0."""
    try:
        return app.parse_flags_with_usage(argv)
    except SystemExit as e:
        if e.code == 1 and help_requested(argv):
            sys.stdout.flush()
            raise SystemExit(0) from None
        raise


def run(main, argv=None):
    """`app.run(main)` with `--help` exiting 0."""
    app.run(main, argv=argv, flags_parser=parse_flags)
