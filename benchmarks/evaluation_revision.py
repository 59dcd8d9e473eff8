"""The test protocol's speed in this tree against another revision's one task per call, in one
run; prints a markdown table.

    python benchmarks/evaluation_revision.py --baseline=b0466cf
        [--configs=omniglot_5way_1shot,omniglot_20way_1shot,miniimagenet_5way_1shot]
        [--tasks=40] [--per_call=1,8,40] [--xla] [--rounds=2]

b0466cf is the code issue 15 was filed against, whose test evaluated one task per call (its
600-task MiniImagenet test took about 9 minutes). The baseline revision is checked out into a
temporary git worktree. Each round runs, one after the other, a fresh process per tree and
variant on the same tasks (random images of the real sizes, `evaluation.pool`, written once and
read by both trees) and the same random weights (`keras.utils.set_random_seed(0)` before
`experiment.build_model`): it traces on the first call's tasks, then times
`evaluation.evaluate_tasks` over all of them with 10 inner steps, as the test runs. The
baseline runs one task per call as graphs; this tree each `--per_call` (and, with `--xla`,
compiled by XLA too). Tasks/s are medians over the rounds; the speed-up is against the
baseline in the same run, and the last column is the largest difference of any task's numbers
(accuracies after 0-10 steps) from the baseline's.
"""
import argparse
import os
import statistics
import tempfile
import time

import revision

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def worker(tasks_file, datasource, classes, shots, alpha, options, per_call, jit_compile):
    """In the tree on sys.path[0]: the test protocol on the tasks of `tasks_file` at `per_call`
    tasks per call after a tracing call; reports seconds, the first call's seconds and the rows."""
    import keras
    import numpy as np

    from maml_tf import evaluation, experiment
    from maml_tf.episodes import EpisodeBatch

    with np.load(tasks_file) as data:
        fields = [data[name] for name in EpisodeBatch._fields]
    batches = [EpisodeBatch(*(field[i:i + 1] for field in fields)) for i in range(len(fields[0]))]
    keras.utils.set_random_seed(0)
    model = experiment.build_model(datasource, num_classes=max(classes, 2), **options)
    compiled = {"jit_compile": True} if jit_compile else {}  # the baseline predates the argument
    learner = experiment.build_learner(model, datasource, update_batch_size=shots, update_lr=alpha,
                                       num_inner_steps=1, **compiled)
    start = time.perf_counter()
    evaluation.evaluate_tasks(learner, batches[:per_call], 10, tasks_per_call=per_call)
    first = time.perf_counter() - start
    start = time.perf_counter()
    rows = evaluation.evaluate_tasks(learner, batches, 10, tasks_per_call=per_call)
    revision.report({"seconds": time.perf_counter() - start, "first_call": first, "rows": rows.tolist()})


def main():
    import numpy as np

    import host
    from evaluation import CONFIGS, pool

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="git revision to compare with (e.g. a commit)")
    parser.add_argument("--configs", default="omniglot_5way_1shot,omniglot_20way_1shot,miniimagenet_5way_1shot",
                        help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--tasks", type=revision.positive_int, default=40, help="tasks evaluated by every variant")
    parser.add_argument("--per_call", type=revision.positive_ints, default="1,8,40",
                        help="this tree's tasks per call, comma-separated")
    parser.add_argument("--xla", action="store_true", help="also this tree with the adaptation compiled by XLA")
    parser.add_argument("--rounds", type=revision.positive_int, default=2, help="alternating processes per variant")
    args = parser.parse_args()
    configs = args.configs.split(",")
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)}; expected some of {', '.join(CONFIGS)}")
    if max(args.per_call) > args.tasks:
        parser.error(f"--per_call: each must be at most --tasks ({args.tasks})")
    ours = [(p, xla) for xla in ((False, True) if args.xla else (False,)) for p in args.per_call]
    with revision.worktree(args.baseline) as base, tempfile.TemporaryDirectory() as tmp:
        print(f"Host: {host.describe()}, {os.cpu_count()} cores; baseline {args.baseline}; {args.tasks} tasks, "
              f"10 inner steps; {args.rounds} alternating rounds, medians\n")
        print("| configuration | tree | compiled | tasks per call | tasks/s | speed-up | first call s | "
              "max difference from the baseline |")
        print("|---|---|---|---|---|---|---|---|")
        for name in configs:
            datasource, classes, shots, _, alpha, options = CONFIGS[name]
            tasks_file = os.path.join(tmp, f"{name}.npz")
            batches = pool(name, args.tasks)
            np.savez(tasks_file, **{f: np.concatenate([getattr(b, f) for b in batches]) for f in batches[0]._fields})
            variants = [("baseline", base, 1, False)] + [("this tree", revision.REPO, p, xla) for p, xla in ours]
            results = {variant: [] for variant in variants}
            for _ in range(args.rounds):
                for variant in variants:
                    _, tree, calls, xla = variant
                    results[variant].append(revision.run_worker(
                        tree, "evaluation_revision", "worker", tasks_file, datasource, classes, shots, alpha,
                        options, calls, xla))
            reference = np.array(results[variants[0]][0]["rows"])
            base_rate = None
            for variant, runs in results.items():
                label, _, calls, xla = variant
                rate = args.tasks / statistics.median(r["seconds"] for r in runs)
                base_rate = base_rate or rate
                difference = max(np.max(np.abs(np.array(r["rows"]) - reference)) for r in runs)
                print(f"| {name} | {label} | {'XLA' if xla else 'graph'} | {calls} | {rate:.2f} | "
                      f"{rate / base_rate:.1f}x | {statistics.median(r['first_call'] for r in runs):.1f} | "
                      f"{difference:.2g} |", flush=True)


if __name__ == "__main__":
    main()
