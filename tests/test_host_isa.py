"""benchmarks/host.py's ISA cap (`--max_isa` of meta_step.py, conv_methods.py, dense_methods.py):
the variables it sets, its refusals, and that TensorFlow's oneDNN really runs its AVX2 kernels
under it (oneDNN's own verbose line names the ISA it dispatched to)."""
import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)
import host  # noqa: E402


def test_the_avx2_cap_sets_every_library_s_variable_and_keeps_other_xla_flags():
    env = host.isa_cap_env("AVX2", {"XLA_FLAGS": "--xla_dump_to=/tmp/x", "PATH": "/bin"})
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2"
    assert env["PATH"] == "/bin"
    assert host.isa_cap_env("AVX2", {})["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2"


def test_an_unknown_isa_is_refused_naming_the_flag():
    with pytest.raises(ValueError, match=r"--max_isa: 'AVX3' is not one of \['AVX2'\]"):
        host.isa_cap_env("AVX3", {})


def test_capping_after_tensorflow_is_loaded_is_refused():
    """The libraries read the variables once, at load: a late cap would silently do nothing."""
    import tensorflow  # noqa: F401  (loaded in this process anyway)

    with pytest.raises(RuntimeError, match="--max_isa: tensorflow already imported"):
        host.cap_isa("AVX2")


def test_under_the_cap_tensorflow_s_onednn_dispatches_to_avx2_and_the_host_line_says_so():
    """A fresh process caps itself, then runs one TensorFlow matmul with ONEDNN_VERBOSE=1: oneDNN
    prints the ISA it chose, which must be AVX2 (on an AVX-512 host it would otherwise name
    AVX-512; on an AVX2 host the cap changes nothing and the line says AVX2 either way)."""
    script = ("import sys; sys.path.insert(0, %r); import host; host.cap_isa('AVX2'); print('HOST', host.describe());"
              "import tensorflow as tf; tf.linalg.matmul(tf.ones([64, 64]), tf.ones([64, 64])).numpy()" % BENCHMARKS)
    env = {k: v for k, v in os.environ.items() if k not in host.ISA_CAPS["AVX2"]}
    env.update(ONEDNN_VERBOSE="1", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    isa_lines = [line for line in done.stdout.splitlines() if line.startswith("onednn_verbose") and ",isa:" in line]
    assert isa_lines, done.stdout[-2000:]
    isa = isa_lines[0].split(",isa:")[1]
    assert "AVX2" in isa and "512" not in isa, isa_lines[0]
    host_line = next(line for line in done.stdout.splitlines() if line.startswith("HOST "))
    assert host_line.endswith("capped at AVX2 (oneDNN, XLA, ATen, MKL)"), host_line
