"""The shipped flagfiles work from any working directory and the `--help` of every entry point
this package owns exits 0 (report.cli).

absl opens a nested `--flagfile=...` line relative to the *working directory* (not to the file
that holds it), so the test flagfiles carry a copy of their training flags instead of an include;
the copy is checked here to stay equal to the training flagfile.
"""
import glob
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from report import cli

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGFILES = sorted(glob.glob(os.path.join(REPO_ROOT, "flags", "*.flags")))
COPY = re.compile(r"^# BEGIN copy of (\S+) .*?\n(.*?)^# END copy of \1\n", re.S | re.M)


def _flag_lines(text):
    return [line for line in text.splitlines() if line.startswith("-")]


def test_no_flagfile_includes_another():
    assert len(FLAGFILES) >= 40
    for path in FLAGFILES:
        with open(path) as f:
            assert not [line for line in f if line.lstrip().startswith(("--flagfile", "-flagfile"))], path


def test_copied_training_flags_equal_their_flagfile():
    copies = 0
    for path in FLAGFILES:
        with open(path) as f:
            text = f.read()
        for source, copied in COPY.findall(text):
            with open(os.path.join(REPO_ROOT, source)) as f:
                assert _flag_lines(copied) == _flag_lines(f.read()), f"{path}: copy of {source} differs; update it"
            copies += 1
    assert copies >= 10


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_expands_from_another_working_directory(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    expanded = flags.FlagValues().read_flags_from_files([f"--flagfile={path}"])
    with open(path) as f:
        assert expanded == _flag_lines(f.read())


@pytest.mark.parametrize("argv,wanted", [
    (["p", "--help"], True), (["p", "-?"], True), (["p", "--helpfull"], True), (["p", "-helpshort"], True),
    (["p", "--help=false"], False), (["p", "--nohelp"], False), (["p", "--x=1"], False),
    (["p", "--", "--help"], False),
])
def test_help_requested(argv, wanted):
    assert cli.help_requested(argv) is wanted


@pytest.mark.parametrize("module", ["data_prep.omniglot", "data_prep.miniimagenet", "report.compare"])
def test_help_exits_zero_and_bad_flags_still_fail(module, tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--helpfull" in result.stdout and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "-m", module, "--no_such_flag=1"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "no_such_flag" in result.stderr


def test_expand_user_in_path_flags(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    fv = flags.FlagValues()
    flags.DEFINE_string("logdir", "~/default", "", flag_values=fv)
    flags.DEFINE_string("output", None, "", flag_values=fv)
    flags.DEFINE_multi_string("run", [], "", flag_values=fv)
    flags.DEFINE_string("name", "~x", "", flag_values=fv)
    fv(["p", "--run=maml:~/a", "--run=/abs"])
    cli.expand_user(["logdir", "output", "run"], fv)
    assert fv.logdir == "/home/someone/default" and fv.output is None
    assert fv.run == ["maml:~/a", "/abs"]  # only a leading ~ is the user's home: "method:~/dir" is rl's to split
    assert fv.name == "~x"  # not a path flag


def test_run_expands_path_flags_before_main(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text("from absl import flags\nfrom report import cli\n"
                      "flags.DEFINE_string('logdir', None, '')\n"
                      "def main(argv):\n    print(flags.FLAGS.logdir)\n"
                      "cli.run(main, path_flags=['logdir'])\n")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, HOME=str(tmp_path))
    result = subprocess.run([sys.executable, str(script), "--logdir=~/runs"], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"{tmp_path}/runs", result.stderr


def test_run_ends_an_unhandled_interrupt_in_one_line(tmp_path):
    """Ctrl-C while an entry point starts up (importing TensorFlow, building its model), which
    its main does not handle: one line naming the program and status 130, no traceback."""
    script = tmp_path / "prog.py"
    script.write_text("from report import cli\n"
                      "def main(argv):\n    raise KeyboardInterrupt\n"
                      "cli.run(main)\n")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert result.returncode == 130 and result.stderr == "prog.py: interrupted (SIGINT)\n", result.stderr


@pytest.mark.parametrize("arg,message", [
    ("--mode=fast", "flag --mode=fast: value should be one of <maml|oracle>"),
    ("--bogus=1", "Unknown command line flag 'bogus'"),
    ("--flagfile=/nonexistent.flags", "Unable to open flagfile: [Errno 2] No such file or directory: "
                                      "'/nonexistent.flags'"),
])
def test_run_reports_a_bad_flag_in_one_line(tmp_path, arg, message):
    """A flag absl refuses while parsing is one line `program: error: ...` and status 1 (absl's
    own parser prints `FATAL Flags parsing error` and a second line, without the program)."""
    script = tmp_path / "prog.py"
    script.write_text("from absl import flags\nfrom report import cli\n"
                      "flags.DEFINE_enum('mode', 'maml', ['maml', 'oracle'], '')\n"
                      "def main(argv):\n    print('ran')\n"
                      "cli.run(main)\n")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run([sys.executable, str(script), arg], env=env, capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"prog.py: error: {message} (--helpshort lists the flags)\n"


def test_a_module_entry_point_is_named_as_run():
    """`python -m maml_tf.main`: errors name the module as the user typed it (its __spec__),
    not the file main.py."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run([sys.executable, "-m", "maml_tf.main", "--bogus"], env=env, capture_output=True,
                            text=True, cwd=REPO_ROOT)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "maml_tf.main: error: Unknown command line flag 'bogus' (--helpshort lists the flags)"


@pytest.mark.parametrize("module", ["report.compare", "maml_tf.compare"])
def test_compare_names_itself_as_run_in_every_error(module, tmp_path):
    """`python -m maml_tf.compare` (the README's paper commands) and `python -m report.compare`
    are one program: each names itself as typed, in a flag error and in its own errors (no
    input; an input that is not there) alike."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    for args, message in (([], "give at least one run directory or test csv"),
                          ([str(tmp_path / "nothing.csv")], "nothing.csv"),
                          (["--bogus"], "Unknown command line flag 'bogus'")):
        result = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                                cwd=tmp_path, timeout=300)
        last = result.stderr.splitlines()[-1]
        assert result.returncode == 1 and last.startswith(f"{module}: error: ") and message in last, result.stderr


def test_read_flagfile_reads_a_command_without_touching_this_processs_flags(tmp_path):
    """`cli.read_flagfile`: a flagfile's values in flags of their own (an integer of the program
    and its default elsewhere); absl's own flags (`--v`, `--logtostderr` and its `--no` form),
    which app.run accepts, pass unread, so this process's logging verbosity stays as it is (a
    copy of absl's verbosity flag reset to its default silenced rl.evaluate's INFO lines); a
    flag the program does not have and a line that is not a flag are errors naming the file."""
    from absl import logging

    def define(flag_values):
        flags.DEFINE_integer("batch", 4, "a setting", flag_values=flag_values)
        flags.DEFINE_integer("steps", 10, "another", flag_values=flag_values)

    path = tmp_path / "c.flags"
    before = logging.get_verbosity()
    logging.set_verbosity(logging.INFO)
    try:
        path.write_text("--batch=32\n--v=2\n--logtostderr\n--nologtostderr\n")
        command = cli.read_flagfile(str(path), define, "prog")
        assert (command["batch"].value, command["steps"].value) == (32, 10)
        assert logging.get_verbosity() == logging.INFO and "batch" not in flags.FLAGS
        for text, message in (("--batch=32\n--bach=3\n", "prog has no flag --bach"),
                              ("--batch=32\njunk\n", "'junk' is not a flag of prog"),
                              ("--batch=x\n", "flag --batch=x: invalid literal")):
            path.write_text(text)
            with pytest.raises(ValueError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
                cli.read_flagfile(str(path), define, "prog")
    finally:
        logging.set_verbosity(before)
