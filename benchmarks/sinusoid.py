"""The full sinusoid protocol, timed: MAML and the pretrained baseline, 70k iterations each
(the paper flagfiles), tested on 600 tasks at K = 5, 10, 20, next to the paper's numbers.

    python benchmarks/sinusoid.py --logdir=$HOME/runs/sine_bench

Training goes through `python -m maml_tf.main` exactly as a user runs it, so it resumes if
interrupted; re-running skips finished work. Prints markdown tables.
"""
import os
import platform
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import maml_tf  # noqa: E402,F401  (before TensorFlow loads: its oneDNN default, as the entry points run)
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

flags.DEFINE_string("logdir", os.path.expanduser("~/runs/sine_bench"), "where the two runs live (resumable)")
flags.DEFINE_integer("iterations", 70000, "training iterations per run (the paper: 70000)")
flags.DEFINE_integer("timing_iterations", 2000, "meta-iterations timed for the ms/iteration figure")
flags.DEFINE_bool("skip_training", False, "only time the steps")
FLAGS = flags.FLAGS

RUNS = {"MAML": "sinusoid", "pretrained": "sinusoid_pretrain"}
SHOTS = (5, 10, 20)


def time_steps(n):
    """Median/mean ms per iteration (task sampling + compiled step) for both kinds of step."""
    import keras

    from maml_tf import experiment
    from maml_tf.meta_learner import MetaLearner
    from maml_tf.sinusoid import SinusoidSampler

    keras.utils.set_random_seed(0)
    learner = MetaLearner(experiment.build_model("sinusoid", norm="None"), experiment.build_loss("sinusoid", 10)[0],
                          update_lr=0.01, num_inner_steps=1)
    sampler, rng = SinusoidSampler(10, 10), np.random.default_rng(0)
    out = {}
    for name, step in (("meta-step (MAML)", lambda b: learner.train_step(b.support, b.query, True).support_loss),
                       ("pretrain step", lambda b: learner.pretrain_step(b.support))):
        step(sampler.sample(rng, 25))  # trace
        times, cpu = [], time.process_time()
        for _ in range(n):
            t = time.perf_counter()
            result = step(sampler.sample(rng, 25))
            _ = float(result)  # wait for it
            times.append(time.perf_counter() - t)
        out[name] = (1000 * np.median(times), 1000 * np.min(times), 1000 * (time.process_time() - cpu) / n)
    return out


def run_main(args):
    cmd = [sys.executable, "-m", "maml_tf.main", *args]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return result.stdout


def main(argv):
    del argv
    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}\n")
    timing = time_steps(FLAGS.timing_iterations)
    load = os.getloadavg()[0]
    print("| step (meta-batch 25, K=10, incl. task sampling) | median ms | min ms | CPU ms (all threads) |")
    print("|---|---|---|---|")
    for name, (median, fastest, cpu) in timing.items():
        print(f"| {name} | {median:.2f} | {fastest:.2f} | {cpu:.2f} |")
    print(f"\n(1-minute load average while timing: {load:.1f}; wall times grow with other work on the machine)")
    if FLAGS.skip_training:
        return

    from maml_tf import evaluation
    from report import paper

    print()
    rows = []
    for label, flagfile in RUNS.items():
        common = [f"--flagfile=flags/{flagfile}.flags", f"--logdir={os.path.join(FLAGS.logdir, flagfile)}"]
        common.append(f"--{'metatrain' if label == 'MAML' else 'pretrain'}_iterations={FLAGS.iterations}")
        t = time.time()
        run_main(common)
        print(f"{label}: trained to {FLAGS.iterations} iterations ({time.time() - t:.0f} s this call)")
        for k in SHOTS:
            out = run_main(common + ["--train=False", f"--update_batch_size={k}", "--train_update_batch_size=10"])
            csv_path = out.strip().splitlines()[-1].removeprefix("Wrote ")
            _, means, _, ci95 = evaluation.read_results(csv_path)
            row = paper.SUPERVISED.get(("sinusoid", "maml" if label == "MAML" else "pretrain", 5, k, True, False))
            rows.append((label, k, means, ci95, row))
    print("\n| method | K | MSE after 1 step | 5 steps | 10 steps | median after 10 | paper (1 / 5 / 10) |")
    print("|---|---|---|---|---|---|---|")
    for label, k, means, ci95, row in rows:
        cells = " | ".join(f"{means[s]:.3f} ± {ci95[s]:.3f}" for s in (1, 5, 10))
        theirs = " / ".join(f"{v:g}" for v in row.values) if row else "—"
        print(f"| {label} | {k} | {cells} | {_median(FLAGS.logdir, label, k):.3f} | {theirs} |")


def _median(logdir, label, k):
    """Median over tasks after 10 steps: robust to the few tasks whose 10-step inner loop diverges."""
    import glob
    import pickle

    flagfile = RUNS[label]
    path = glob.glob(os.path.join(logdir, flagfile, "*", f"test_ubs{k}_stepsize0.01.pkl"))[0]
    with open(path, "rb") as f:
        return float(np.median(pickle.load(f)["mses"][:, 10]))


if __name__ == "__main__":
    app.run(main)
