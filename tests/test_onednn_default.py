"""maml_tf's oneDNN default (maml_tf/__init__.py): importing the package before TensorFlow turns
TensorFlow's oneDNN kernels on, on every host, where TensorFlow itself turns them on only for
CPUs with AVX-512 VNNI, BF16 or AMX (on an AVX2-only AMD EPYC it leaves them off, and Eigen's
kernels then run MiniImagenet 1.6-2.2x slower and cannot differentiate grouped convolutions). A
user's explicit TF_ENABLE_ONEDNN_OPTS wins, and `--conv_method=grouped` is then refused in one
line. Each case is a fresh process, since TensorFlow reads the variable once, when it loads."""
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


def test_grouped_convolutions_without_onednn_are_refused_naming_the_flag_and_the_variable():
    """With TF_ENABLE_ONEDNN_OPTS=0, `--conv_method=grouped` stops before training with one line
    naming the flag and the variable, not a TensorFlow error from inside the first gradient."""
    done = _run(["-m", "maml_tf.main", "--datasource=sinusoid", "--conv_method=grouped", "--train=True",
                 "--metatrain_iterations=1", "--logdir=/nonexistent/never_written"], "0")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "--conv_method=grouped" in last and "TF_ENABLE_ONEDNN_OPTS" in last, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
