"""Whether XLA (`jit_compile`) runs a training step faster on this machine: timed, not assumed.

Which is faster depends on the host and the network, so both packages time the two on the run's
own data when `--jit_compile` is unset: `maml_tf.xla_choice` the supervised meta-step,
`rl.maml.TRPOTrainer.choose_compilation` the TRPO step's KL gradient (README, "Meta-iteration
speed" and "Half-cheetah and ant").
"""
import statistics
import time
from typing import NamedTuple, Optional

import tensorflow as tf


class XlaTiming(NamedTuple):
    """The median seconds of one training step as a graph and compiled by XLA (None: XLA failed,
    `error` says why); `use_xla`: XLA was faster by more than XLA_MARGIN."""
    use_xla: bool
    graph_seconds: float
    xla_seconds: Optional[float]
    error: Optional[str] = None


# XLA is kept only if its median step is at least this fraction shorter: within it the two are a
# tie on 2 cores (Omniglot 5-shot first order measured 1.00x in one run, 0.70x in another), and
# a tie keeps the graphs, the original's way, without a compile at every new input shape.
XLA_MARGIN = 0.05


def time_graph_and_xla(build_learner, run_step, rounds=3, min_seconds=1.0, max_rounds=50,
                       clock=time.perf_counter, check_stop=lambda: None):
    """Time one training step as a graph and compiled by XLA, alternating, and say which is faster.

    `build_learner(jit_compile)` returns a learner over a throwaway copy of the model (the steps
    update its weights and optimiser); `run_step(learner)` runs the step the run will spend its
    iterations on and returns its outputs. Each is run once first (tracing, and XLA's compiling,
    are not timed), then alternately at least `rounds` times each and until the timed steps
    took `min_seconds` (at most `max_rounds`: millisecond steps are noisy, so they get more);
    XLA is chosen if its median is XLA_MARGIN shorter than the graph's. XLA failing to build or
    run (a refused configuration, an op it cannot compile) leaves the graph, with the error's
    first line in `error`. `check_stop()` is called after each compile and each round (a stop
    signal need not wait for the whole timing: it raises there).
    """
    graph = build_learner(False)
    _finish(run_step(graph))
    check_stop()
    try:
        xla = build_learner(True)
        _finish(run_step(xla))
    except (ValueError, tf.errors.OpError) as e:
        message = e.message if isinstance(e, tf.errors.OpError) else str(e)
        check_stop()
        (graph_times,) = _alternate([graph], run_step, clock, check_stop, lambda n, seconds: n >= rounds)
        return XlaTiming(False, statistics.median_high(graph_times), None,
                         message.strip().splitlines()[0] if message.strip() else type(e).__name__)
    check_stop()
    graph_times, xla_times = _alternate(
        [graph, xla], run_step, clock, check_stop,
        lambda n, seconds: n >= max_rounds or (n >= rounds and seconds >= min_seconds))
    graph_seconds, xla_seconds = statistics.median_high(graph_times), statistics.median_high(xla_times)
    return XlaTiming(xla_seconds < (1 - XLA_MARGIN) * graph_seconds, graph_seconds, xla_seconds)


def _alternate(learners, run_step, clock, check_stop, enough):
    """[seconds of each timed step] per learner: rounds in which each learner steps once in
    turn, `check_stop()` after each, until `enough(rounds so far, seconds timed in all)`."""
    times = [[] for _ in learners]
    while not enough(len(times[0]), sum(map(sum, times))):
        for learner_times, learner in zip(times, learners):
            learner_times.append(_seconds(run_step, learner, clock))
        check_stop()
    return times


def _seconds(run_step, learner, clock):
    start = clock()
    _finish(run_step(learner))
    return clock() - start


def _finish(outputs):
    """Wait for a step's results (tensors, or a structure of them) to exist on the host."""
    for t in tf.nest.flatten(outputs):
        if hasattr(t, "numpy"):
            t.numpy()
