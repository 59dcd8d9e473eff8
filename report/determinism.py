"""The same step on the same inputs gives the same bits, call after call: TensorFlow's graph
optimiser must not add gradients up in the order they happen to finish.

Grappler's memory optimiser rewrites an AddN of three or more inputs (how a gradient tape sums
the contributions to a tensor used three or more times, e.g. the policy's scale in a Gaussian
log-likelihood, or batch norm's statistics) into a temporary variable with one AssignAdd per
input, so that each input can be freed once added (`memory_optimizer.cc`, SchedulingPass). It
does so when its static estimate of the graph's peak memory exceeds 80 % of the RAM free at the
time the function is first run, and the additions then run in the order their inputs are
computed, which varies with thread timing. Measured on 2 cores (29 November 2026): Omniglot
20-way second-order meta-gradients took 4 distinct values in 8 calls on the same batch,
MiniImagenet 5-way 1-shot second order 3 in 5, Omniglot 5-shot first order 3 in 5, and the
half-cheetah inner step's log-std 2 in 30; in the half-cheetah direction task's chaotic dynamics
such last-bit differences grew into test returns after three steps that differed by 6.8 between
identical runs of `rl.evaluate`. A run could then neither repeat itself nor resume bit for bit.

`keep_sums_in_order()` switches that optimiser off (RewriterConfig.memory_optimization =
NO_MEM_OPT; the other grappler passes stay on) for every graph TensorFlow builds from then on in
this process. TensorFlow has no public switch for it (`tf.config.optimizer.set_experimental_options`
does not take memory_optimization), so it is set in the eager context's base ConfigProto, a private
attribute; tests/report/test_determinism.py checks that the options the installed TensorFlow passes
with every tf.function call carry it. The modules that take the two packages' gradients call it
when they are imported: `maml_tf.maml` (the inner loop and meta-gradient),
`maml_tf.batched_forward` (whose convolution calibration times gradients before a learner
exists) and `rl.objectives` (the inner step, surrogate and KL).
"""
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context

__all__ = ["keep_sums_in_order", "sums_kept_in_order"]


def keep_sums_in_order(keep=True):
    """Turn grappler's memory optimiser off (keep=False: back to TensorFlow's default, on) for
    every tf.function call from now on (module docstring), in this thread and in any thread that
    has not called one yet (TensorFlow caches its call options per thread). A function called
    directly is optimised once per setting: one called before gets a second graph at its next call
    and keeps both, each used while its setting holds (benchmarks/ordered_sums.py alternates
    them); a function called from inside another's graph keeps the setting of that graph's trace."""
    ctx = context.context()
    base = config_pb2.ConfigProto()
    if ctx._config is not None:
        base.CopyFrom(ctx._config)
    base.graph_options.rewrite_options.memory_optimization = (
        rewriter_config_pb2.RewriterConfig.NO_MEM_OPT if keep else rewriter_config_pb2.RewriterConfig.DEFAULT_MEM_OPT)
    ctx._config = base
    ctx.function_call_options = None  # this thread's cached options: rebuilt from the base on next use


def sums_kept_in_order():
    """Whether the options a tf.function call passes to grappler now have the memory optimiser off."""
    options = config_pb2.ConfigProto.FromString(context.context().function_call_options.config_proto_serialized)
    return options.graph_options.rewrite_options.memory_optimization == rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
