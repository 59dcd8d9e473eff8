"""Whether XLA (`jit_compile`) runs a training step faster on this machine: timed, not assumed.

Which is faster depends on the host and the network (README, "Meta-iteration speed"): XLA fused
the dispatch-bound dense steps (sinusoid, non-conv Omniglot) 1.1-2.4x faster on every host
measured; on the conv steps it ranged from 0.5x to 1.3x of the graphs with the host and the
shapes (first-order MiniImagenet 0.5-0.7x everywhere, Omniglot 5-shot 0.6-0.8x on some hosts and
1.1x on others). So `maml_tf.main`'s default times both on the batch of the run's iteration 0
before training (the timing and its margin: `report.xla_timing`; when it runs: `maml_tf.main`).
"""
import gc

import keras

from report.xla_timing import XLA_MARGIN, XlaTiming, time_graph_and_xla

__all__ = ["XLA_MARGIN", "XlaTiming", "time_graph_and_xla", "choose_on_copies"]  # the timing lives in report


def choose_on_copies(model, learner, build_learner, run_step, check_stop=lambda: None, timer=time_graph_and_xla):
    """Time `run_step` with `timer` (time_graph_and_xla) on learners over clones of `model`, then
    compile `learner`'s steps the faster way (`learner.compile_steps`) and return the timing.

    `build_learner(model, jit_compile)` builds a learner over a model; the clones get the model's
    weights, and their steps update only the clones and their own optimisers: the run's model,
    `learner`'s optimiser state (its iteration count included) are as before.
    """
    def build_copy(jit_compile):
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        return build_learner(copy, jit_compile)

    timing = timer(build_copy, run_step, check_stop=check_stop)
    gc.collect()  # the copies' graphs and compiled programs
    learner.compile_steps(timing.use_xla)
    return timing
