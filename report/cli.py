"""Running an entry point: absl's app.run, with `--help` a success and `~` expanded in paths.

absl ends `--help`, `--helpshort`, `--helpfull` and `--helpxml` with exit status 1 (it treats
them like a usage error); shells and CI scripts read that as a failure. `run(main)` is app.run
with the help flags ending in status 0 and a flag absl refuses ending in one line
`program: error: ...` and status 1 (absl prints two `FATAL` lines). The shell expands `~` only
at the start of a word, so `--logdir=~/runs` reaches the program as a literal `~/runs`;
`run(main, path_flags=[...])` expands it in the named flags (string or list flags) right after
parsing, before `main` sees them. Progress printed to a pipe or file goes out line by line, and
Ctrl-C during start-up is one line.
"""
import functools
import os
import sys

from absl import app, flags

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
    """absl's parser, except that help exits with status 0 and a bad flag (unknown, a value
    it refuses, a missing --flagfile) is one line `program: error: ...` with status 1 (absl's
    `parse_flags_with_usage` prints two, without the program's name)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = "; ".join(line.strip().removeprefix("ERROR:: ") for line in str(e).splitlines() if line.strip())
        print(f"{program_name()}: error: {message} (--helpshort lists the flags)", file=sys.stderr)
        sys.exit(1)
    except SystemExit as e:
        if e.code == 1 and help_requested(argv):
            sys.stdout.flush()
            raise SystemExit(0) from None
        raise


def read_flagfile(path, define, program):
    """The flag values a `program --flagfile=PATH` command sets, read by absl into flags made for
    this alone (the running program's flags are untouched): `define(flag_values)` defines the
    program's own; absl's (`--v`, `--logtostderr`, ...: app.run accepts them) are let through
    unread. A flag the program does not have, a line that is not a flag, a value a flag refuses
    or a file that cannot be opened is a ValueError naming the file."""
    command = flags.FlagValues()
    define(command)
    absl_names = {name for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
                  if module.startswith("absl.") for flag in module_flags
                  for name in [flag.name, flag.short_name] + (["no" + flag.name] if flag.boolean else []) if name}
    try:
        rest = command([program, f"--flagfile={path}"], known_only=True)[1:]
    except flags.Error as e:
        raise ValueError(f"{path}: {e}") from None
    for arg in rest:
        name = arg.lstrip("-").split("=", 1)[0]
        if not arg.startswith("-"):
            raise ValueError(f"{path}: {arg!r} is not a flag of {program}")
        if name not in absl_names:
            raise ValueError(f"{path}: {program} has no flag --{name}")
    return command


def expand_user(names, flag_values=flags.FLAGS):
    """Expand a leading `~` in the values of the named string / list flags (None stays None)."""
    for name in names:
        value = flag_values[name].value
        if isinstance(value, str):
            flag_values[name].value = os.path.expanduser(value)
        elif isinstance(value, list):
            flag_values[name].value = [os.path.expanduser(v) if isinstance(v, str) else v for v in value]


def parse_flags_expanding(argv, path_flags=()):
    args = parse_flags(argv)
    expand_user(path_flags)
    return args


def program_name():
    """The running program as its users call it: `maml_tf.main` for `python -m maml_tf.main`."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else os.path.basename(sys.argv[0])


def _interrupt_is_one_line(main):
    """`main` with a KeyboardInterrupt it does not handle itself (Ctrl-C while it starts up,
    importing TensorFlow or building its model) ending in one line and status 130, not a
    traceback. Outputs are written whole or not at all (`report.files`), so nothing is half
    written."""
    @functools.wraps(main)
    def guarded(argv):
        try:
            return main(argv)
        except KeyboardInterrupt:
            print(f"{program_name()}: interrupted (SIGINT)", file=sys.stderr)
            sys.exit(130)

    return guarded


def run(main, argv=None, path_flags=()):
    """`app.run(main)` with `--help` exiting 0 and `~` expanded in the flags named in `path_flags`.
    Standard output is line-buffered, so that progress reaches a log file or pipe (`nohup ... >
    log`) as it is printed, not in blocks of kilobytes; Ctrl-C that `main` does not handle is one
    line (`_interrupt_is_one_line`)."""
    if hasattr(sys.stdout, "reconfigure"):  # (not a redirected StringIO, nor None)
        sys.stdout.reconfigure(line_buffering=True)
    main = _interrupt_is_one_line(main)
    app.run(main, argv=argv, flags_parser=functools.partial(parse_flags_expanding, path_flags=tuple(path_flags)))
