"""What the benchmark tables name about the machine: the CPU, its widest vector ISA, and the fp32
matmul peak measured in the running process (hosts of one kind differ 2-4x, so every table says
where it was measured); and `cap_isa`, which makes an AVX-512 host run the AVX2 code paths of
TensorFlow's oneDNN, XLA's code generator and PyTorch (ATen, MKL, oneDNN), so that a rule can be
compared on both ISAs in one place."""
import os
import platform
import sys
import time

# What each library reads to stop at an instruction set (read once, when the library loads):
# oneDNN (TensorFlow's and PyTorch's convolutions and matmuls), XLA's CPU code generator, PyTorch's
# ATen kernels and MKL (PyTorch's fp32 matmul).
ISA_CAPS = {
    "AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
}


def isa_cap_env(isa, environ):
    """`environ` with the variables that cap every library at `isa` (a key of ISA_CAPS; XLA_FLAGS is
    appended to, not replaced). ValueError naming --max_isa for any other name."""
    if isa not in ISA_CAPS:
        raise ValueError(f"--max_isa: {isa!r} is not one of {sorted(ISA_CAPS)}")
    env = dict(environ)
    for name, value in ISA_CAPS[isa].items():
        env[name] = f"{env[name]} {value}" if name == "XLA_FLAGS" and env.get(name) else value
    return env


def cap_isa(isa):
    """Cap this process, and the processes it starts, at `isa` (see ISA_CAPS); None: do nothing.
    It must run before TensorFlow or torch is imported, which read the variables once, and on a
    host that has the ISA: RuntimeError otherwise."""
    if isa is None:
        return
    loaded = sorted(m for m in ("tensorflow", "torch") if m in sys.modules)
    if loaded:
        raise RuntimeError(f"--max_isa: {', '.join(loaded)} already imported; cap the ISA before importing it")
    if not has_avx2():
        raise RuntimeError(f"--max_isa={isa}: this host reports {cpu()[1]}; it cannot run those code paths")
    os.environ.update(isa_cap_env(isa, os.environ))
    os.environ[CAP_MARKER] = isa


# Set by cap_isa (and inherited by the processes it starts): what describe() reports.
CAP_MARKER = "MAML_TF_MAX_ISA"


def capped_isa():
    """The ISA cap_isa capped this process (or its parent) at, or None."""
    return os.environ.get(CAP_MARKER) or None


def cpu():
    """(model name with family / model, ISA: 'AVX-512', 'AVX2 (no AVX-512)' or 'no AVX2') from
    /proc/cpuinfo; ('unknown CPU', 'unknown ISA') where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return platform.processor() or "unknown CPU", "unknown ISA"
    get = {k.strip(): v.strip() for k, v in fields.items()}.get
    flags = set((get("flags") or "").split())
    isa = "AVX-512" if "avx512f" in flags else "AVX2 (no AVX-512)" if "avx2" in flags else "no AVX2"
    return f"{get('model name') or 'unknown CPU'} (family {get('cpu family')}, model {get('model')})", isa


def has_avx2():
    """True when the host runs AVX2 (AVX-512 hosts do too): what cap_isa's one cap needs."""
    return cpu()[1] in ("AVX-512", "AVX2 (no AVX-512)")


def tf_onednn():
    """'on' or 'off': whether the TensorFlow loaded in this process runs its oneDNN kernels. Its
    own default is on only for CPUs with AVX-512 (VNNI, BF16 or AMX); importing maml_tf first asks
    for them everywhere (TF_ENABLE_ONEDNN_OPTS=1), so a table names the kernels it measured."""
    from tensorflow.python.util import _pywrap_util_port  # the flag TensorFlow's own tests read

    return "on" if _pywrap_util_port.IsMklEnabled() else "off"


def describe():
    """'<model>, <ISA>' for a table header, with ' capped at <ISA>' under cap_isa."""
    model, isa = cpu()
    capped = capped_isa()
    return f"{model}, {isa}" + (f" capped at {capped} (oneDNN, XLA, ATen, MKL)" if capped else "")


def matmul_peak_gflops(size=2048, repeats=5):
    """The fp32 matmul peak: best of `repeats` TensorFlow size x size matmuls, in GFLOP/s."""
    import tensorflow as tf

    a = tf.random.uniform([size, size], dtype=tf.float32)
    b = tf.random.uniform([size, size], dtype=tf.float32)
    tf.linalg.matmul(a, b).numpy()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tf.linalg.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9
