"""Print the supervised equivalence table: the authors' code against ours, every configuration.

    python tests/original/equivalence_table.py [--iterations=100] [--mini_iterations=10]
        [--data_dir=DIR] [--config=NAME ...]

DIR holds omniglot_resized/ (default: prepared into a temporary folder from ../shared/data).
MiniImagenet runs on generated images. See harness.compare for what each column measures.
float64: the original graph with every float32 read as float64 (tf1_compat) against our model
built in float64: equality to float64 round-off, at the same weights and over whole free runs.
float32: what both really run; the yardstick is our own two implementations against each other.
"""
import argparse
import os
import pathlib
import platform
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import harness  # noqa: E402

HEADER = ("| configuration | float64 iterations | float64: loss, same weights (max rel.) "
          "| float64: meta-gradient, same weights (rel. L2) | float64: weights after free runs (rel. L2) "
          "| float32 iterations | float32: loss | float32: meta-gradient ours vs original "
          "| float32: ours batched vs ours per-task | float32: ours per-task vs original |")


def _cpu():
    flags = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")),
                 platform.processor())
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    return f"{model}, {isa}, {os.cpu_count()} cores"


def row(r64, r32):
    fmt = lambda r, key: f"{r[key]:.1e}" if key in r else "—"  # noqa: E731
    return (f"| {r64['config']} | {r64['iterations']} | {fmt(r64, 'loss')} | {fmt(r64, 'gradient')} "
            f"| {fmt(r64, 'free_weights')} | {r32['iterations']} | {fmt(r32, 'loss')} | {fmt(r32, 'gradient')} "
            f"| {fmt(r32, 'reference_gradient')} | {fmt(r32, 'reference_vs_theirs_gradient')} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100, help="float64 iterations")
    parser.add_argument("--mini_iterations", type=int, default=10, help="float64 iterations for MiniImagenet")
    parser.add_argument("--float32_iterations", type=int, default=10)
    parser.add_argument("--float32_mini_iterations", type=int, default=2)
    parser.add_argument("--data_dir", default=None, help="folder holding omniglot_resized/")
    parser.add_argument("--config", action="append", choices=list(harness.CONFIGS), help="default: all")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            from data_prep.omniglot import prepare_omniglot

            prepare_omniglot(harness.SHARED_DATA / "omniglot", tmp)
            data_dir = tmp
        print(f"Host: {_cpu()}; python {platform.python_version()}\n", flush=True)
        print(HEADER)
        print("|" + "---|" * HEADER.count(" | ") + "---|", flush=True)
        for config in args.config or harness.CONFIGS:
            mini = config.startswith("MiniImagenet")
            data = os.path.expanduser(data_dir)
            r64 = harness.compare(config, args.mini_iterations if mini else args.iterations, omniglot_dir=data,
                                  free_running=True, reference=False, reference_free=False, dtype="float64")
            r32 = harness.compare(config, args.float32_mini_iterations if mini else args.float32_iterations,
                                  omniglot_dir=data, free_running=False, reference=True)
            print(row(r64, r32), flush=True)


if __name__ == "__main__":
    main()
