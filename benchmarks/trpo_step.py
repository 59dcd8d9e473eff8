"""Where a half-cheetah MAML-TRPO meta-iteration spends its time, and the TRPO step with and
without XLA on the same data; prints markdown tables.

    python benchmarks/trpo_step.py [--env=cheetah_vel] [--fast_batch_size=10] [--rounds=3]

One support and one query batch are sampled once at the paper-checkpoint configuration (40 tasks,
fast batch 10 paths of 200 steps, fast lr 0.1; `flags/rl_cheetah_vel_paper_checkpoint.flags`).
Then, alternating round by round on the same data and the same starting parameters:

  - the TRPO step (`MAMLTRPO.step`: 1 surrogate gradient, 10 CG iterations + 1 for the step size,
    each a finite-difference HVP of 2 KL gradients, and the line search) as the trainer runs it
    (tf.function graphs) and with `jit_compile=True` (XLA);
  - its parts: one surrogate-and-KL evaluation, one KL gradient, one surrogate gradient.

The KL gradient differentiates through the inner step, so it is second order; its matrix
products are counted analytically (dense layers only: forward 2 d_in d_out flops per row;
reverse through the inner step and the query loss as described in `kl_gradient_flops`) and set
against a 2048 x 2048 float32 matmul measured in the same process (the machine's practical peak).
"""
import os
import sys
import time

import numpy as np
from absl import app, flags

import host  # benchmarks/host.py
import rl_batch  # benchmarks/rl_batch.py

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "cheetah_vel", "Locomotion task family.")
flags.DEFINE_integer("meta_batch_size", 40, "Tasks.")
flags.DEFINE_integer("fast_batch_size", 10, "Paths per task (200 steps each).")
flags.DEFINE_integer("rounds", 3, "Alternating timed rounds (after one warm-up of each variant).")


def kl_gradient_flops(layer_sizes, support_rows, query_rows):
    """Matrix-product flops of one KL gradient through the inner step, dense layers only.

    Per layer (d_in x d_out, 2 d_in d_out flops per row for one product), counted as products:
    support: forward 1, inner gradient 2 (input and weight cotangents; 1 for the first layer,
    whose input is data); query at theta': forward 1, reverse 2 (1 for the first layer);
    reverse through the support's forward and inner gradient (second order): 2 per product of
    the first two groups. The log-std and elementwise work are not counted."""
    flops = 0.0
    for i, (d_in, d_out) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        per_row = 2.0 * d_in * d_out
        reverse = 1 if i == 0 else 2
        support_products = 1 + reverse
        flops += per_row * (support_rows * (support_products + 2 * support_products) + query_rows * (1 + reverse))
    return flops


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv):
    del argv
    import tensorflow as tf

    from rl.maml import MAMLTRPO

    mb, fb = FLAGS.meta_batch_size, FLAGS.fast_batch_size
    graph, support, query, (support_seconds, query_seconds) = rl_batch.paper_batch(FLAGS.env, mb, fb)
    policy, vec, config = graph.policy, graph.vec_env, graph.config
    learners = {"graph": graph, "XLA": MAMLTRPO(policy, vec, config, jit_compile=True)}
    data = (support, query)
    theta = policy.get_flat()
    peak = host.matmul_peak_gflops()

    def parts(learner):
        return {"TRPO step": lambda: learner.step(*data),
                "surrogate and KL": lambda: learner.compiled_surrogate_and_kl(*data)[1].numpy(),
                "surrogate gradient": lambda: learner.surrogate_gradient(*data)[1].numpy(),
                "KL gradient": lambda: learner.kl_gradient(*data)[1].numpy()}

    times = {(v, p): [] for v in learners for p in parts(learners[v])}
    steps = {}
    for round_ in range(FLAGS.rounds + 1):
        for variant, learner in learners.items():
            for part, fn in parts(learner).items():
                policy.set_flat(theta)
                seconds = _seconds(fn)
                if round_:
                    times[(variant, part)].append(seconds)
            steps[variant] = learner.last_trpo_step
            policy.set_flat(theta)
    sizes = [vec.obs_dim, *config.hidden_sizes, vec.act_dim]
    rows_s, rows_q = (int(tf.reduce_sum(d["mask"])) for d in data)
    kl_flops = kl_gradient_flops(sizes, rows_s, rows_q)
    graph, xla = steps["graph"], steps["XLA"]
    print(f"\n{FLAGS.env}, {mb} tasks x {fb} paths x 200 steps ({rows_s} support + {rows_q} query steps), "
          f"policy {sizes}, TF {tf.__version__}, {host.describe()}, {os.cpu_count()} CPUs; "
          f"2048^2 fp32 matmul peak {peak:.0f} GFLOP/s; median of {FLAGS.rounds} alternating rounds\n")
    print(f"Sampling (once): support {support_seconds:.1f} s, query {query_seconds:.1f} s.\n")
    print("| part | graph ms | XLA ms | graph / XLA | graph GFLOP/s (% of peak) |")
    print("|---|---|---|---|---|")
    for part in parts(learners["graph"]):
        g, x = (1000 * np.median(times[(v, part)]) for v in ("graph", "XLA"))
        roof = (f"{kl_flops / g / 1e6:.0f} ({100 * kl_flops / g / 1e6 / peak:.0f} %)" if part == "KL gradient"
                else "")
        print(f"| {part} | {g:.0f} | {x:.0f} | {g / x:.2f} | {roof} |")
    hvps = 2 * (config.cg_iters + 1)
    step_ms = 1000 * np.median(times[("graph", "TRPO step")])
    kl_ms = 1000 * np.median(times[("graph", "KL gradient")])
    print(f"\nThe step makes {hvps} KL-gradient calls (finite-difference HVPs): {hvps * kl_ms / step_ms:.0%} "
          f"of the graph step; one KL gradient = {kl_flops / 1e9:.1f} GFLOP of matrix products (analytic).")
    print(f"Same result: step size {graph.initial_step_size:.6g} vs {xla.initial_step_size:.6g}, "
          f"loss after {graph.loss_after:.6g} vs {xla.loss_after:.6g}, backtracks {graph.backtracks} vs "
          f"{xla.backtracks}; max |direction difference| / max |direction| = "
          f"{np.abs(graph.direction - xla.direction).max() / np.abs(graph.direction).max():.1e}")


if __name__ == "__main__":
    app.run(main)
