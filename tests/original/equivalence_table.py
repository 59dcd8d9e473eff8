"""Print the supervised equivalence table: the authors' code against ours, every configuration.

    python tests/original/equivalence_table.py [--iterations=100] [--mini_iterations=10]
        [--data_dir=DIR] [--config=NAME ...]

DIR holds omniglot_resized/ (default: prepared into a temporary folder from ../shared/data).
MiniImagenet runs on generated images. See harness.compare for what each column measures.
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

HEADER = ("| configuration | iterations | loss, same weights (max rel.) | accuracy (max abs.) "
          "| meta-gradient, same weights: ours vs original | ours batched vs ours per-task | ours per-task vs original "
          "| free running: loss (max rel.) | final weights ours vs original | final weights batched vs per-task |")


def _cpu():
    flags = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")),
                 platform.processor())
    isa = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    return f"{model}, {isa}, {os.cpu_count()} cores"


def row(r):
    fmt = lambda key: f"{r[key]:.1e}" if key in r else "—"  # noqa: E731
    acc = f"{r['accuracy']:.3g}" if "accuracy" in r else "—"
    return (f"| {r['config']} | {r['iterations']} | {fmt('loss')} | {acc} | {fmt('gradient')} "
            f"| {fmt('reference_gradient')} | {fmt('reference_vs_theirs_gradient')} | {fmt('free_loss')} "
            f"| {fmt('free_weights')} | {fmt('reference_weights')} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--mini_iterations", type=int, default=10, help="iterations for MiniImagenet")
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
            r = harness.compare(config, args.mini_iterations if mini else args.iterations,
                                omniglot_dir=os.path.expanduser(data_dir))
            print(row(r), flush=True)


if __name__ == "__main__":
    main()
