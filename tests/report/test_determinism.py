"""report.determinism: grappler's memory optimiser, which adds large gradient sums up in the
order their inputs finish, is off for every graph of maml_tf and rl (the same bits on every call).

The rewrite fires only when grappler's estimate of a graph's peak memory exceeds 80 % of the RAM
free when the graph is first run, which a test cannot arrange; the tests check that the options
every tf.function call passes to grappler turn it off once the packages are imported, and (slow
suite) that a real second-order step then repeats itself bit for bit: a check that can only fail
where RAM is short (as beside a training), so it is not worth its minute in the default suite.
"""
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_call_options_turn_the_memory_optimiser_off():
    """The ConfigProto a tf.function call hands to grappler (the eager context's call options,
    which every function instantiation is optimised with) carries memory_optimization =
    NO_MEM_OPT once `keep_sums_in_order()` ran: the private attribute it sets is the one the
    installed TensorFlow builds those options from."""
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context

    from report.determinism import keep_sums_in_order

    keep_sums_in_order()
    options = config_pb2.ConfigProto.FromString(context.context().function_call_options.config_proto_serialized)
    assert options.graph_options.rewrite_options.memory_optimization == rewriter_config_pb2.RewriterConfig.NO_MEM_OPT


@pytest.mark.slow
def test_a_second_order_meta_gradient_is_the_same_bits_on_every_call():
    """Omniglot 20-way 1-shot, second order (16 tasks, 5 inner steps, the paper's sizes): eight
    calls on one batch give bit-identical meta-gradients. With TensorFlow's default options the
    same eight calls gave 3-4 distinct results on a 2-core Intel Xeon (family 6 model 167) while
    a training held 7 GB of its RAM (benchmarks/ordered_sums.py); whether grappler rewrites the
    sums there depends on the RAM free when the step is first run, so on a host with more free
    RAM this passes either way."""
    import keras
    import numpy as np
    import tensorflow as tf

    from maml_tf import experiment

    keras.utils.set_random_seed(0)
    model = experiment.build_model("omniglot", num_classes=20)
    learner = experiment.build_learner(model, "omniglot", update_batch_size=1, update_lr=0.1, num_inner_steps=5)
    rng = np.random.default_rng(0)
    labels = np.broadcast_to(np.eye(20, dtype=np.float32), (16, 20, 20))
    support = (rng.random((16, 20, 28, 28, 1), dtype=np.float32), labels)
    query = (rng.random((16, 20, 28, 28, 1), dtype=np.float32), labels)
    gradients = tf.function(lambda s, q: learner.meta_gradients(s, q)[1], autograph=False)
    results = {b"".join(g.numpy().tobytes() for g in gradients(support, query)) for _ in range(8)}
    assert len(results) == 1


def test_keep_false_restores_the_default_and_true_again():
    """`keep_sums_in_order(False)` gives the call options TensorFlow's default back (what
    benchmarks/ordered_sums.py alternates with); the packages' setting is restored after."""
    from report.determinism import keep_sums_in_order, sums_kept_in_order

    try:
        keep_sums_in_order(False)
        assert not sums_kept_in_order()
    finally:
        keep_sums_in_order(True)
    assert sums_kept_in_order()


@pytest.mark.parametrize("module", ["maml_tf.maml", "maml_tf.batched_forward", "rl.objectives"])
def test_importing_the_algorithm_keeps_sums_in_order(module):
    """In a fresh process, TensorFlow alone leaves the memory optimiser on (so this can fail), and
    importing a module that takes the packages' gradients (maml_tf.maml: the inner loop and
    meta-gradient; maml_tf.batched_forward: the convolution calibration's timed gradients, run
    before any learner exists; rl.objectives: the inner step, surrogate and KL) turns it off."""
    probe = ("import tensorflow\nfrom report.determinism import sums_kept_in_order\nprint(sums_kept_in_order())\n"
             f"import {module}\nprint(sums_kept_in_order())\n")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"]
