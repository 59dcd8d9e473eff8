"""Milliseconds per meta-iteration for every Table 1 configuration and the sinusoid: ours (the
batched MetaLearner) against a PyTorch peer of the same meta-step (benchmarks/torch_maml.py, in
its torch.func vmap and per-task loop forms), second and first order, with a roofline column.

    python benchmarks/meta_step.py                      # everything (about half an hour)
    python benchmarks/meta_step.py --configs=omniglot_5way_1shot --orders=second --rounds=20
    python benchmarks/meta_step.py --nopeer --reference  # ours against our per-task reference only
    python benchmarks/meta_step.py --xla                # also ours compiled by XLA (--jit_compile)
    python benchmarks/meta_step.py --max_isa=AVX2       # every library on its AVX2 code paths

The peer needs torch (`pip install -e .[bench]`). Each (configuration, order) runs in two
processes of its own. The first checks the peer from our model's starting weights on the timed
inputs (four tasks of them, MiniImagenet one; `torch_maml.check_batch`): in float64 its
meta-gradient must be ours to 1e-9 (relative), or it disagrees and is not timed; in float32 both
are compared with the float64 meta-gradient, for information (ReLU gates flipped by round-off make
any tolerance meaningless there; see `torch_maml.FLOAT64_TOLERANCE`). The second times: ours
alone first (trace, then its peak RSS), then ours, the torch vmap and torch loop steps (and, with
--reference, our per-task reference `ReferenceLearner` from tests/reference_maml.py) in
alternation, round by round, so that all see the same load; their ratio is the figure to trust.
Every path runs the full step: inner steps, the query set scored after every inner step, the
meta-gradient, the clip (MiniImagenet) and Adam. With several inner steps our lean `train_step`
(query scored after the last step only, what training runs) is timed too. Inputs are random at
the real sizes.

Both libraries run with the same threads (TensorFlow's default, one per core; torch set to the
same), denormals flushed, and glibc told to keep freed memory (`--glibc_tunables`): TensorFlow's
oneDNN allocator caches its buffers, but torch's CPU allocator returns every large block to the
system, and without this the torch steps spend up to half their time in page faults (2.6 million
per MiniImagenet step); PyTorch's CPU tuning guide recommends jemalloc or tcmalloc for the same.

Roofline: FLOPs per step are counted analytically from the architecture
(torch_maml.meta_step_flops: conv and dense products only) and divided by the median time, against
the machine's fp32 matmul peak measured at the start (TensorFlow 2048 x 2048 matmul, best of 5).
"""
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))  # reference_maml
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_maml

import maml_tf  # noqa: E402,F401  (before TensorFlow loads: its oneDNN default, as the entry points run)
from absl import app, flags  # noqa: E402

import host  # noqa: E402  (benchmarks/host.py)

# name: (datasource, classes N, meta-batch, K, query per class, inner steps, alpha, model options)
CONFIGS = {
    "sinusoid": ("sinusoid", 1, 25, 10, 10, 1, 0.01, {"norm": "None"}),
    "omniglot_5way_1shot": ("omniglot", 5, 32, 1, 1, 1, 0.4, {}),
    "omniglot_5way_5shot": ("omniglot", 5, 32, 5, 5, 1, 0.4, {}),
    "omniglot_20way_1shot": ("omniglot", 20, 16, 1, 1, 5, 0.1, {}),
    "omniglot_nonconv_5way_1shot": ("omniglot", 5, 32, 1, 1, 1, 0.4, {"conv": False}),
    "miniimagenet_5way_1shot": ("miniimagenet", 5, 4, 1, 15, 5, 0.01, {"num_filters": 32, "max_pool": True}),
    "miniimagenet_5way_5shot": ("miniimagenet", 5, 2, 5, 15, 5, 0.01, {"num_filters": 32, "max_pool": True}),
}
# The convolutional configurations (the per-task convolution and large-activation benchmarks).
CONV_CONFIGS = [name for name, config in CONFIGS.items() if config[0] != "sinusoid" and config[7].get("conv", True)]
PEERS = ("vmap", "loop")
# glibc keeps freed memory: no mmap'd blocks (each would be unmapped on free), no trimming.
GLIBC_TUNABLES = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"

flags.DEFINE_list("configs", list(CONFIGS), f"configurations to time, from {list(CONFIGS)}")
flags.DEFINE_list("orders", ["second", "first"], "second and/or first (stop_grad)")
flags.DEFINE_integer("rounds", 10, "timed meta-iterations of each path (alternating), after one warm-up each")
flags.DEFINE_float("max_seconds", 240, "stop a configuration's timed rounds after this long (at least 3 rounds)")
flags.DEFINE_bool("peer", True, "check and time the PyTorch peer (benchmarks/torch_maml.py; needs torch)")
flags.DEFINE_bool("reference", False, "also time our per-task reference (tests/reference_maml.py)")
flags.DEFINE_bool("xla", False, "also time ours with the steps compiled by XLA (MetaLearner(jit_compile=True), "
                  "maml_tf.main --jit_compile)")
flags.DEFINE_string("glibc_tunables", GLIBC_TUNABLES,
                    "GLIBC_TUNABLES of the worker processes ('' for glibc's defaults)")
flags.DEFINE_enum("max_isa", None, list(host.ISA_CAPS),
                  "run every library on this ISA's code paths (host.cap_isa: oneDNN, XLA, ATen, MKL), e.g. to "
                  "measure an AVX2 host's choices on an AVX-512 one; the workers inherit it")
flags.DEFINE_string("worker", None, "internal: time one 'config:order' and print JSON")
flags.DEFINE_string("check", None, "internal: check the peer on one 'config:order' and print JSON")
flags.DEFINE_list("time_peers", list(PEERS), "internal: the peer variants the worker times")
FLAGS = flags.FLAGS


# ----------------------------------------------------------------------------------------------
# Inputs and learners
# ----------------------------------------------------------------------------------------------

def _peak_rss_mb():
    """VmHWM: this process's peak resident set since start (or since `_reset_peak_rss`)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _batch(config, rng):
    """Random (support x, support y, query x, query y) at the configuration's real sizes."""
    import numpy as np

    datasource, n, tasks, k, q, _, _, _ = config
    if datasource == "sinusoid":
        x = rng.uniform(-5, 5, (tasks, k + q, 1)).astype(np.float32)
        y = (rng.uniform(0.1, 5, (tasks, 1, 1)) * np.sin(x - rng.uniform(0, np.pi, (tasks, 1, 1)))).astype(np.float32)
        return x[:, :k], y[:, :k], x[:, k:], y[:, k:]
    shape = (28, 28, 1) if datasource == "omniglot" else (84, 84, 3)
    labels = np.eye(n, dtype=np.float32)
    return (rng.random((tasks, n * k, *shape), dtype=np.float32),
            np.broadcast_to(labels[np.tile(np.arange(n), k)], (tasks, n * k, n)).copy(),
            rng.random((tasks, n * q, *shape), dtype=np.float32),
            np.broadcast_to(labels[np.tile(np.arange(n), q)], (tasks, n * q, n)).copy())


def _learner(config, first_order, batched=True, dtype="float32", weights=None, jit_compile=False, **learner_options):
    """Our MetaLearner (or, `batched` False, the per-task reference) for a configuration, on the
    model's seeded starting weights, or on `weights` ({variable path: array}) cast to `dtype`;
    `jit_compile`: its steps compiled by XLA; `learner_options` (e.g. conv=, dense=) go to
    `experiment.build_learner`."""
    import keras

    from maml_tf import experiment
    from reference_maml import ReferenceLearner

    datasource, n, _, k, _, steps, alpha, options = config
    keras.utils.set_random_seed(0)
    model = experiment.build_model(datasource, num_classes=n, dtype=dtype, **options)
    if weights is not None:
        for variable in model.trainable_variables:
            variable.assign(weights[variable.path].astype(dtype))
    return experiment.build_learner(model, datasource, update_batch_size=k, update_lr=alpha, num_inner_steps=steps,
                                    first_order=first_order, learner_class=None if batched else ReferenceLearner,
                                    **({"jit_compile": True} if jit_compile else {}), **learner_options)


def _weights_checksum(learner):
    """Sum of |w| over the learner's weights: the check and the timing see the same start."""
    return float(sum(abs(v.numpy().astype("float64")).sum() for v in learner.variables))


def _threads():
    return len(os.sched_getaffinity(0))


# ----------------------------------------------------------------------------------------------
# Workers (one process per configuration and order)
# ----------------------------------------------------------------------------------------------

def run_check(spec):
    """The peer against ours on the timed inputs, from the timed starting weights."""
    import numpy as np
    import torch_maml

    torch_maml.configure(_threads())
    name, order = spec.split(":")
    config = CONFIGS[name]
    batch = _batch(config, np.random.default_rng(0))
    ours32 = _learner(config, order == "first")
    ours64 = _learner(config, order == "first", dtype="float64",
                      weights={v.path: v.numpy() for v in ours32.variables})
    result = torch_maml.compare_with_ours(config, ours32, ours64, batch)
    return {"config": name, "order": order, "first_order": ours32.first_order, "weights_checksum": _weights_checksum(ours32),
            **result}


def failure_reason(error):
    """An exception's reason in one line. A refusal raised while tracing comes wrapped in "in
    user code:" and the traced function's traceback: its reason is the last "...Error: " line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
    reasons = [line for line in lines if re.match(r"\w+Error: ", line)]
    return reasons[-1] if lines[0] == "in user code:" and reasons else lines[0]


def _step_seconds(learner, batch, score_every_step=True):
    start = time.perf_counter()
    out = learner.train_step(batch[:2], batch[2:], score_every_step)
    _ = float(out.support_loss)  # wait for the result
    return time.perf_counter() - start


def alternating_step_seconds(learners, batch, rounds):
    """{name: [seconds of each timed step]} for {name: MetaLearner}: each learner's full step
    (`_step_seconds`) twice to warm up (trace, then one more), then `rounds` rounds in which
    every learner steps once in turn, so that all see the same load. A learner's refusal to
    trace (a ValueError) propagates."""
    for learner in learners.values():
        for _ in range(2):
            _step_seconds(learner, batch)
    times = {name: [] for name in learners}
    for _ in range(rounds):
        for name, learner in learners.items():
            times[name].append(_step_seconds(learner, batch))
    return times


def begin_against_auto_run(configs, allowed, xla, rounds):
    """The start of a run comparing methods against 'auto' (conv_methods.py, dense_methods.py):
    refuses `configs` outside `allowed` (app.UsageError), caps the ISA at --max_isa, quiets
    retracing warnings (one trace per learner is the point there) and prints the host line."""
    host.cap_isa(FLAGS.max_isa)
    import tensorflow as tf

    unknown = sorted(set(configs) - set(allowed))
    if unknown:
        raise app.UsageError(f"--configs: {unknown} not among {allowed}")
    tf.get_logger().setLevel("ERROR")
    print(f"Host: {host.describe()}, {os.cpu_count()} cores; {'XLA' if xla else 'graphs'}; {rounds} rounds",
          flush=True)


def against_auto_rows(name, order, times):
    """Markdown rows `| configuration | order | method | median / min ms | auto / method |` from
    `alternating_step_seconds`' times, whose learners include one named 'auto'."""
    auto = statistics.median(times["auto"])
    return [f"| {name} | {order} | {method} | {1e3 * statistics.median(seconds):.1f} / {1e3 * min(seconds):.1f} | "
            f"{auto / statistics.median(seconds):.2f}x |" for method, seconds in times.items()]


def _torch_step_seconds(learner, batch):
    start = time.perf_counter()
    scores = learner.train_step(*batch)
    _ = float(scores[0])
    return time.perf_counter() - start


def _warm(path, step, result):
    result[f"{path}_trace_s"] = step()  # trace / first step
    step()  # warm-up


def _timed_paths(config, order, batch, peers):
    """([(path, step function)], measurements): every path traced and warmed up; ours' peak RSS
    measured before anything else is built, the reference's from a reset; the peers start from
    ours' starting weights (the checked ones), torch imported only then."""
    result = {}
    ours = _learner(config, order == "first")
    start_weights = {v.path: v.numpy() for v in ours.variables}
    result["weights_checksum"] = _weights_checksum(ours)
    paths = [("ours", lambda: _step_seconds(ours, batch))]
    _warm("ours", paths[0][1], result)
    result["ours_peak_rss_mb"] = _peak_rss_mb()
    if config[5] > 1:  # the lean step differs only with several inner steps
        paths.append(("train_step", lambda: _step_seconds(ours, batch, False)))
        _warm(*paths[-1], result)
    if FLAGS.xla:
        xla = _learner(config, order == "first", jit_compile=True)
        step = lambda: _step_seconds(xla, batch)  # noqa: E731
        try:
            _warm("xla", step, result)
            paths.append(("xla", step))
        except Exception as error:  # noqa: BLE001  (reported in the table: XLA cannot compile this step)
            result["xla_error"] = failure_reason(error)[:120]
    if FLAGS.reference:
        _reset_peak_rss()
        reference = _learner(config, order == "first", batched=False)
        paths.append(("reference", lambda: _step_seconds(reference, batch)))
        _warm(*paths[-1], result)
        result["reference_peak_rss_mb"] = _peak_rss_mb()
    if peers:
        import torch_maml

        torch_maml.configure(_threads())
        torch_batch = torch_maml.batch_to_torch(batch)
        meta_lr = float(ours.meta_optimizer.learning_rate.numpy())
        for variant in peers:
            peer = torch_maml.learner_from_weights(config, start_weights, first_order=order == "first",
                                                   variant=variant, meta_lr=meta_lr)
            paths.append((f"torch_{variant}", lambda peer=peer: _torch_step_seconds(peer, torch_batch)))
            _warm(*paths[-1], result)
    return paths, result


def run_worker(spec):
    """One configuration and order, in this process: every path timed in alternation."""
    import numpy as np

    name, order = spec.split(":")
    config = CONFIGS[name]
    batch = _batch(config, np.random.default_rng(0))
    peers = [p for p in FLAGS.time_peers if p] if FLAGS.peer else []
    paths, result = _timed_paths(config, order, batch, peers)
    result.update(config=name, order=order)
    times = {path: [] for path, _ in paths}
    start = time.perf_counter()
    for i in range(FLAGS.rounds):
        for path, step in paths:
            time.sleep(0.02)  # the other library's spinning threads go idle first
            times[path].append(step())
        if i >= 2 and time.perf_counter() - start > FLAGS.max_seconds:
            break
    for path, values in times.items():
        result[f"{path}_median_ms"] = 1000 * statistics.median(values)
        result[f"{path}_min_ms"] = 1000 * min(values)
        result[f"{path}_rounds"] = len(values)
    return result


# ----------------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------------

def _machine(peer):
    import tensorflow as tf

    onednn = f"{host.tf_onednn()} (the timing workers: as maml_tf.choose_onednn, off for the sinusoid)"
    versions = f"Python {platform.python_version()}, TF {tf.__version__}"
    if peer:
        import torch

        versions += f", torch {torch.__version__}"
    threads = _threads()
    return (f"CPU: {host.describe()}, {threads} cores\n"
            f"{versions}, oneDNN {onednn}; {threads} threads each (TF default, torch.set_num_threads({threads}))\n"
            f"GLIBC_TUNABLES of the workers: {FLAGS.glibc_tunables or '(glibc defaults)'}\n"
            f"Load average at start: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


# ----------------------------------------------------------------------------------------------
# The parent: one check and one timing process per (configuration, order), then the table
# ----------------------------------------------------------------------------------------------

def print_result(value):
    """A worker's answer to `_run_json`: `value` as JSON on a RESULT line."""
    print("RESULT " + json.dumps(value), flush=True)


def _run_json(args, script=__file__, **env_vars):
    """Run `script` (this one by default) with `args` in a fresh process, with `env_vars` added to
    the environment; its RESULT line as a dict, or None."""
    env = dict(os.environ)
    if FLAGS.glibc_tunables:
        env["GLIBC_TUNABLES"] = FLAGS.glibc_tunables
    env.update(env_vars)
    cmd = [sys.executable, os.path.abspath(script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        print(f"{' '.join(args)}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT "):])


def _measure(name, order):
    """Check the peer, then time ours and every peer variant that agrees: one row's dict."""
    common = [f"--rounds={FLAGS.rounds}", f"--max_seconds={FLAGS.max_seconds}", f"--reference={FLAGS.reference}",
              f"--peer={FLAGS.peer}", f"--xla={FLAGS.xla}"]
    check, agreeing = None, []
    if FLAGS.peer:
        check = _run_json([f"--check={name}:{order}"])
        if check is None:
            return None
        agreeing = [v for v in PEERS if check["agrees"][v]]
    row = _run_json([f"--worker={name}:{order}", f"--time_peers={','.join(agreeing)}", *common])
    if row is None:
        return None
    if check is not None:
        if abs(check["weights_checksum"] - row["weights_checksum"]) > 1e-6 * row["weights_checksum"]:
            raise RuntimeError(f"{name} {order}: the check and the timing started from different weights")
        row["check"] = check
    return row


def main(argv):
    del argv
    if FLAGS.worker:  # TensorFlow not loaded yet: the kernels maml_tf.main would run this datasource on
        maml_tf.choose_onednn(CONFIGS[FLAGS.worker.split(":")[0]][0])
        print_result(run_worker(FLAGS.worker))
        return
    if FLAGS.check:
        print_result(run_check(FLAGS.check))
        return
    unknown = set(FLAGS.configs) - set(CONFIGS)
    if unknown:
        sys.exit(f"unknown configurations {sorted(unknown)}; choose from {list(CONFIGS)}")
    host.cap_isa(FLAGS.max_isa)
    if FLAGS.peer:
        try:
            import torch_maml
        except ImportError as error:
            sys.exit(f"the PyTorch peer needs torch ({error}): pip install -e .[bench], or run with --nopeer")
    print(_machine(FLAGS.peer), flush=True)
    peak = host.matmul_peak_gflops()
    print(f"fp32 matmul peak (TensorFlow 2048 x 2048, best of 5): {peak:.1f} GFLOP/s\n", flush=True)
    rows = []
    for name in FLAGS.configs:
        for order in FLAGS.orders:
            row = _measure(name, order)
            if row is None:
                continue
            if FLAGS.peer:
                row["gflop"] = torch_maml.meta_step_flops(CONFIGS[name], order == "first") / 1e9
            rows.append(row)
            print(_row(row, peak), file=sys.stderr, flush=True)
    print(f"Load average at end: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print(_header())
    for row in rows:
        print(_row(row, peak))
    print(_footnote())


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------

def _header():
    cells = ["configuration", "order", "ours median / min ms"]
    if FLAGS.peer:
        cells += ["torch vmap median / min ms", "torch loop median / min ms", "best torch / ours (median)",
                  "f64 meta-gradient rel diff to ours: vmap / loop", "f32 rel error vs f64: vmap / loop (ours)",
                  "GFLOP per step (analytic)", "GFLOP/s ours / best torch (% of peak)"]
    cells += ["ours peak RSS MB", "rounds"]
    if FLAGS.xla:
        cells += ["ours XLA median / min ms", "ours / ours XLA"] + (["best torch / ours XLA"] if FLAGS.peer else [])
    if FLAGS.reference:
        cells += ["reference median / min ms", "reference peak RSS MB", "reference / ours (median)"]
    cells.append("ours lean train_step median ms")
    return "| " + " | ".join(cells) + " |\n|" + "---|" * len(cells)


def _ms(r, path):
    return f"{r[f'{path}_median_ms']:.1f} / {r[f'{path}_min_ms']:.1f}"


def _peer_cells(r, peak):
    check = r["check"]
    timed = [v for v in PEERS if f"torch_{v}_median_ms" in r]
    cells = [_ms(r, f"torch_{v}") if v in timed else "disagrees: not timed" for v in PEERS]
    best = min((r[f"torch_{v}_median_ms"] for v in timed), default=None)
    cells.append(f"{best / r['ours_median_ms']:.2f}x" if best else "-")
    cells.append(" / ".join(f"{check['float64'][v]:.0e}" for v in PEERS))
    cells.append(" / ".join(f"{check['float32'][v]:.0e}" for v in PEERS) + f" ({check['ours_float32']:.0e})")
    cells.append(f"{r['gflop']:.2f}")
    rate = lambda ms: r["gflop"] / (ms / 1000)  # noqa: E731
    ours = f"{rate(r['ours_median_ms']):.1f} ({100 * rate(r['ours_median_ms']) / peak:.0f}%)"
    cells.append(ours + (f" / {rate(best):.1f} ({100 * rate(best) / peak:.0f}%)" if best else " / -"))
    return cells


def _row(r, peak):
    cells = [r["config"], r["order"], _ms(r, "ours")]
    if "check" in r:
        cells += _peer_cells(r, peak)
    cells += [f"{r['ours_peak_rss_mb']:.0f}", str(r["ours_rounds"])]
    if "xla_median_ms" in r:
        cells += [_ms(r, "xla"), f"{r['ours_median_ms'] / r['xla_median_ms']:.2f}x"]
        if "check" in r:
            best = min((r[f"torch_{v}_median_ms"] for v in PEERS if f"torch_{v}_median_ms" in r), default=None)
            cells.append(f"{best / r['xla_median_ms']:.2f}x" if best else "-")
    elif "xla_error" in r:
        cells += [f"XLA failed: {r['xla_error']}", "-"] + (["-"] if "check" in r else [])
    if "reference_median_ms" in r:
        cells += [_ms(r, "reference"), f"{r['reference_peak_rss_mb']:.0f}",
                  f"{r['reference_median_ms'] / r['ours_median_ms']:.2f}x"]
    cells.append(f"{r['train_step_median_ms']:.1f}" if "train_step_median_ms" in r else "= full step")
    return "| " + " | ".join(cells) + " |"


def _footnote():
    if not FLAGS.peer:
        return ""
    return ("\nms: one full meta-step (inner steps, query scored after every step, meta-gradient, clip, Adam); "
            "best torch / ours > 1: ours faster.\n"
            "rel diff / error: max |x - y| / max |y| over the whole meta-gradient, from the same weights on the "
            "check inputs (torch_maml.check_batch); f64: the peer against ours in float64 (> 1e-9: disagrees, "
            "not timed); f32: each float32 meta-gradient against ours in float64 (ReLU gates flipped by "
            "round-off, no tolerance).\n"
            "GFLOP: conv and dense products counted analytically (torch_maml.meta_step_flops; a product's "
            "reverse costs one product per operand depending on the weights; second order also reverses "
            "the inner backward); GFLOP/s at the median time.")


if __name__ == "__main__":
    app.run(main)
