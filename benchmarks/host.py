"""What the benchmark tables name about the machine: the CPU, its widest vector ISA, and the fp32
matmul peak measured in the running process (hosts of one kind differ 2-4x, so every table says
where it was measured)."""
import platform
import time


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


def describe():
    """'<model>, <ISA>' for a table header."""
    return ", ".join(cpu())


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
