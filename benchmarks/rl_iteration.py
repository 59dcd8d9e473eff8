"""Seconds per MAML-TRPO meta-iteration of this tree against another revision, in one run; prints
a markdown table.

    python benchmarks/rl_iteration.py --baseline=b0466cf [--env=cheetah_vel] [--fast_batch_size=10]
        [--iterations=2] [--rounds=2]

The baseline revision is checked out into a temporary git worktree. Each round runs, one after the
other, a fresh process of each tree (baseline first) that builds the trainer at the
paper-checkpoint configuration (40 tasks, 200-step paths, fast lr 0.1, batch counted in steps),
runs one warm-up iteration (tracing) and then `--iterations` timed ones from the same seed, and
reports its iteration times split into sampling (`rl.sampler.rollout` for both batches: env
steps and policy calls) and the rest (baselines, advantages, inner step and TRPO step). Each tree
runs as `rl.train` runs it by default: where the tree times the TRPO step's KL gradient as a graph
and under XLA (`--jit_compile` unset), the warm-up iteration does, and the timed ones run the
chosen way (the table counts the processes that chose XLA). Alternating rounds let both trees see the same load; the
ratio of their medians is the figure to trust.
"""
import os
import time

import revision

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def worker(env, fast_batch_size, iterations):
    """In the tree on sys.path[0]: time `iterations` meta-iterations after a warm-up; print JSON."""
    import numpy as np

    from rl.config import TrainConfig
    from rl.envs import make_vec_env
    from rl.maml import MAMLTRPO
    from rl.policy import Policy
    import rl.maml

    config = TrainConfig(env=env, mode="maml", fast_lr=0.1, meta_batch_size=40, fast_batch_size=fast_batch_size,
                         max_path_length=200, batch_in_steps=True)
    vec = make_vec_env(env, 40 * fast_batch_size)
    learner = MAMLTRPO(Policy(vec.obs_dim, vec.act_dim, seed=1), vec, config)
    sampling = [0.0]
    original_rollout = rl.maml.rollout

    def timed_rollout(*args, **kwargs):
        start = time.perf_counter()
        out = original_rollout(*args, **kwargs)
        sampling[0] += time.perf_counter() - start
        return out

    rl.maml.rollout = timed_rollout
    rng = np.random.default_rng(1)
    if hasattr(learner, "choose_compilation"):  # as rl.train runs a long run with --jit_compile unset
        learner.time_xla_next = True
    learner.iteration(rng)  # warm-up (and the timing, where the tree has it)
    rows = []
    for _ in range(iterations):
        sampling[0] = 0.0
        start = time.perf_counter()
        stats = learner.iteration(rng)
        rows.append({"seconds": time.perf_counter() - start, "sampling": sampling[0], "steps": stats["EnvSteps"],
                     "xla": bool(getattr(learner, "jit_compile", False))})
    revision.report(rows)


def _run_tree(tree, args):
    return revision.run_worker(tree, "rl_iteration", "worker", args.env, args.fast_batch_size, args.iterations)


def main():
    import argparse
    import statistics

    import host

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with (e.g. a commit)")
    parser.add_argument("--env", default="cheetah_vel")
    parser.add_argument("--fast_batch_size", type=revision.positive_int, default=10)
    parser.add_argument("--iterations", type=revision.positive_int, default=2, help="timed iterations per process")
    parser.add_argument("--rounds", type=revision.positive_int, default=2, help="alternating processes per tree")
    args = parser.parse_args()
    with revision.worktree(args.baseline) as base:
        results = {"baseline": [], "this tree": []}
        for _ in range(args.rounds):
            results["baseline"] += _run_tree(base, args)
            results["this tree"] += _run_tree(revision.REPO, args)
    median = {k: {f: statistics.median(r[f] for r in v) for f in ("seconds", "sampling")} for k, v in results.items()}
    steps = results["this tree"][0]["steps"]
    print(f"\n{args.env} MAML-TRPO meta-iteration, 40 tasks x {args.fast_batch_size} paths x 200 steps "
          f"({steps} env steps), {host.describe()}, {os.cpu_count()} CPUs; baseline {args.baseline}; "
          f"{args.rounds} alternating rounds x {args.iterations} iterations, medians\n")
    print("| tree | seconds / iteration | sampling s | the rest s | TRPO step compiled by XLA (processes) |")
    print("|---|---|---|---|---|")
    for name, m in median.items():
        xla = sum(r["xla"] for r in results[name][::args.iterations])
        print(f"| {name} | {m['seconds']:.1f} | {m['sampling']:.1f} | {m['seconds'] - m['sampling']:.1f} | "
              f"{xla} of {args.rounds} |")
    ratio = median["baseline"]["seconds"] / median["this tree"]["seconds"]
    sampling = median["baseline"]["sampling"] / max(median["this tree"]["sampling"], 1e-9)
    print(f"\nSpeed-up of this tree: {ratio:.2f}x (sampling {sampling:.2f}x)")


if __name__ == "__main__":
    main()
