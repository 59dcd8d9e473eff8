"""benchmarks/host.py's ISA cap (`--max_isa` of meta_step.py, conv_methods.py, dense_methods.py, large_activations.py):
the variables it sets, its refusals, that the benchmark modules leave TensorFlow and torch
unloaded until it has run, and that TensorFlow's oneDNN really runs its AVX2 kernels under it
(oneDNN's own verbose line names the ISA it dispatched to)."""
import os
import subprocess
import sys

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCHMARKS)
import host  # noqa: E402


def _clean_env(**extra):
    """This process's environment without any cap (nor its marker), plus `extra`."""
    capped = set(host.ISA_CAPS["AVX2"]) | {host.CAP_MARKER}
    return {**{k: v for k, v in os.environ.items() if k not in capped}, **extra}


def _run(script, env):
    done = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {BENCHMARKS!r}); {script}"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=BENCHMARKS)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


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


def test_capping_after_tensorflow_is_loaded_is_refused_and_changes_nothing(monkeypatch):
    """The libraries read the variables once, at load: a late cap would silently do nothing."""
    import tensorflow  # noqa: F401  (loaded in this process anyway)

    for name in [*host.ISA_CAPS["AVX2"], host.CAP_MARKER]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=r"--max_isa: .*tensorflow.* already imported"):
        host.cap_isa("AVX2")
    assert host.capped_isa() is None and "ONEDNN_MAX_CPU_ISA" not in os.environ


def test_a_host_without_avx2_is_refused_and_changes_nothing():
    """has_avx2 reads the ISA from cpu(); on a host without AVX2 the cap is refused in one line
    (checked in a child process, which has loaded neither library)."""
    code = ("import host, os\n"
            "host.cpu = lambda: ('Some CPU (family 6, model 1)', 'no AVX2')\n"
            "assert not host.has_avx2()\n"
            "try:\n    host.cap_isa('AVX2')\nexcept RuntimeError as e:\n    print(e)\n"
            "print(os.environ.get('ONEDNN_MAX_CPU_ISA'), host.capped_isa())")
    out = _run(code, _clean_env())
    assert out.splitlines() == ["--max_isa=AVX2: this host reports no AVX2; it cannot run those code paths",
                                "None None"]


def test_no_cap_leaves_the_host_line_alone_and_a_stray_onednn_variable_is_not_reported_as_a_cap():
    out = _run("import host; print(host.describe())", _clean_env(ONEDNN_MAX_CPU_ISA="AVX2"))
    assert "capped" not in out and out.strip() == host.describe()


def test_the_benchmark_modules_load_neither_tensorflow_nor_torch_before_the_cap():
    """meta_step.py, conv_methods.py, dense_methods.py and large_activations.py call host.cap_isa in main();
    importing them (what happens before main) must leave both libraries unloaded."""
    out = _run("import meta_step, conv_methods, dense_methods, large_activations; "
               "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))", _clean_env())
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(not host.has_avx2(), reason="the cap needs an x86 host with AVX2 (CI's and the dev hosts have it)")
def test_under_the_cap_tensorflow_s_onednn_dispatches_to_avx2_and_the_host_line_says_so():
    """A fresh process caps itself, then runs one TensorFlow matmul with ONEDNN_VERBOSE=1: oneDNN
    prints the ISA it chose, which must be AVX2 (on an AVX-512 host it would otherwise name
    AVX-512; on an AVX2 host the cap changes nothing and the line says AVX2 either way)."""
    out = _run("import host; host.cap_isa('AVX2'); print('HOST', host.describe()); import tensorflow as tf; "
               "tf.linalg.matmul(tf.ones([64, 64]), tf.ones([64, 64])).numpy()",
               _clean_env(ONEDNN_VERBOSE="1", TF_ENABLE_ONEDNN_OPTS="1", TF_CPP_MIN_LOG_LEVEL="2"))
    isa_lines = [line for line in out.splitlines() if line.startswith("onednn_verbose") and ",isa:" in line]
    assert isa_lines, out[-2000:]
    isa = isa_lines[0].split(",isa:")[1]
    assert "AVX2" in isa and "512" not in isa, isa_lines[0]
    host_line = next(line for line in out.splitlines() if line.startswith("HOST "))
    assert host_line.endswith("capped at AVX2 (oneDNN, XLA, ATen, MKL)"), host_line
