"""maml_tf's oneDNN default (maml_tf/__init__.py): importing the package before TensorFlow turns
TensorFlow's oneDNN kernels on, on every host, where TensorFlow itself turns them on only for
CPUs with AVX-512 VNNI, BF16 or AMX (on an AVX2-only AMD EPYC it leaves them off, and Eigen's
kernels then run MiniImagenet 1.6-2.2x slower and cannot differentiate grouped convolutions). A
user's explicit TF_ENABLE_ONEDNN_OPTS wins, and `--conv_method=grouped` is then refused in one
line. The entry point's `choose_onednn` then takes Eigen's kernels for the sinusoid. Each case is a
fresh process, since TensorFlow reads the variable once, when it loads."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import maml_tf, tensorflow\n"
         "from tensorflow.python.util import _pywrap_util_port\n"
         "from maml_tf import batched_forward\n"
         "print(_pywrap_util_port.IsMklEnabled(), batched_forward.grouped_convolution_trains('float32'))")


def _env(onednn):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(args, onednn):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=_env(onednn), cwd=REPO,
                          timeout=300)


@pytest.mark.parametrize("onednn, expected", [(None, "True True"), ("1", "True True"), ("0", "False False")])
def test_importing_maml_tf_first_turns_onednn_on_unless_the_user_said_otherwise(onednn, expected):
    """Unset: on (TensorFlow's own default is off on AVX2-only hosts, so this fails there without
    the package's default); '1' on; '0' off. The grouped-convolution probe follows: only oneDNN
    differentiates grouped convolutions on CPU."""
    done = _run(["-c", PROBE], onednn)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == expected


@pytest.mark.parametrize("onednn", ["0", None])
def test_grouped_convolutions_without_onednn_are_refused_naming_the_flag_and_the_variable(onednn):
    """Without oneDNN, `--conv_method=grouped` stops before training with one line naming the flag
    and the variable, not a TensorFlow error from inside the first gradient: with
    TF_ENABLE_ONEDNN_OPTS=0, and with nothing set for the sinusoid, as maml_tf.main calls
    choose_onednn before TensorFlow loads and so runs the sinusoid without oneDNN (the image
    datasets would accept the flag)."""
    done = _run(["-m", "maml_tf.main", "--datasource=sinusoid", "--conv_method=grouped", "--train=True",
                 "--metatrain_iterations=1", "--logdir=/nonexistent/never_written"], onednn)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "--conv_method=grouped" in last and "TF_ENABLE_ONEDNN_OPTS" in last, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


CHOOSE = ("import os, sys, maml_tf\n"
          "setting = maml_tf.choose_onednn(sys.argv[1])\n"
          "if sys.argv[2] == 'tensorflow':\n"
          "    from tensorflow.python.util import _pywrap_util_port\n"
          "    print(setting, _pywrap_util_port.IsMklEnabled())\n"
          "else:\n"
          "    print(setting, os.environ['TF_ENABLE_ONEDNN_OPTS'] == '1')")


@pytest.mark.parametrize("datasource, onednn, expected, probe", [
    ("sinusoid", None, "0 False", "tensorflow"), ("omniglot", None, "1 True", "tensorflow"),
    ("miniimagenet", None, "1 True", "variable"), ("sinusoid", "1", "1 True", "variable"),
    ("omniglot", "0", "0 False", "variable")])
def test_choose_onednn_takes_eigen_for_the_sinusoid_and_onednn_for_images_unless_the_user_chose(
        datasource, onednn, expected, probe):
    """maml_tf.choose_onednn(datasource), called before TensorFlow loads (as maml_tf.main does
    after parsing its flags): Eigen's kernels for the sinusoid's tiny products (1.35x faster on an
    AVX2 AMD EPYC, README), oneDNN for the image datasets; an explicit TF_ENABLE_ONEDNN_OPTS wins.
    Two cases ask TensorFlow which kernels it took; the others read the variable it would read
    (TensorFlow's reading of it: the import tests above), without the seconds of loading it."""
    done = _run(["-c", CHOOSE, datasource, probe], onednn)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == expected


def test_choose_onednn_after_tensorflow_loaded_changes_nothing():
    """TensorFlow reads the variable once: a late choice leaves the kernels and the variable as
    they are and says so by returning the setting in force."""
    code = ("import maml_tf, tensorflow, os\n"
            "from tensorflow.python.util import _pywrap_util_port\n"
            "print(maml_tf.choose_onednn('sinusoid'), os.environ['TF_ENABLE_ONEDNN_OPTS'], "
            "_pywrap_util_port.IsMklEnabled())")
    done = _run(["-c", code], None)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "1 1 True"


@pytest.mark.slow
def test_the_onednn_benchmark_times_both_settings_in_their_own_processes():
    """benchmarks/onednn.py runs each setting in fresh processes and checks that TensorFlow took
    it (a worker whose oneDNN state differs from its TF_ENABLE_ONEDNN_OPTS stops the run): one
    sinusoid row with both medians and their ratio."""
    done = _run([os.path.join(REPO, "benchmarks", "onednn.py"), "--configs=sinusoid", "--orders=first",
                 "--rounds=2", "--repeats=1"], None)
    assert done.returncode == 0, done.stderr[-2000:]
    row = [line for line in done.stdout.splitlines() if line.startswith("| sinusoid | first |")][-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    off, on = (float(c.split(" / ")[0]) for c in cells[2:4])
    assert off > 0 and on > 0 and float(cells[4].rstrip("x")) == pytest.approx(off / on, rel=0.05)  # cells rounded


@pytest.mark.parametrize("onednn, expected", [(None, "True"), ("0", "False")])
def test_importing_rl_first_turns_onednn_on_unless_the_user_said_otherwise(onednn, expected):
    """rl/__init__.py makes the same default as maml_tf: the TRPO step's kernels are oneDNN's on
    every host (1.6x faster on an AVX2 AMD EPYC, where TensorFlow alone leaves them off). The
    variable is checked as well as TensorFlow's state: on AVX-512 VNNI hosts TensorFlow turns
    oneDNN on by itself, so its state alone would not show the package's default."""
    code = ("import os, rl, tensorflow\n"
            "from tensorflow.python.util import _pywrap_util_port\n"
            "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))\n"
            "print(_pywrap_util_port.IsMklEnabled())")
    done = _run(["-c", code], onednn)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-3:-1] == [onednn or "1", expected]
