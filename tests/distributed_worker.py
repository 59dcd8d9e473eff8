"""One worker of the multi-worker job in tests/test_distributed_multi_worker.py: the meta-gradient
of each configuration of tests/distributed_cases.py on the same batch, its tasks split across
the job's workers (TF_CONFIG), and the sinusoid's weights and Adam state after two meta-updates;
the chief saves them to argv[1] (.npz).

    python tests/distributed_worker.py OUT.npz     (one process per worker, TF_CONFIG set)
"""
import sys

import numpy as np

from report.distribution import is_chief, make_strategy

strategy = make_strategy("multi_worker")  # before any other TensorFlow op

from distributed_cases import CONFIGS, build_learner, local_support_inputs, random_batch  # noqa: E402
from maml_tf.distributed import DistributedLearner  # noqa: E402

results = {}
for name, (datasource, _, _, tasks) in sorted(CONFIGS.items()):
    with strategy.scope():
        learner = DistributedLearner(build_learner(name), strategy)
    batch = random_batch(datasource, tasks)
    means, gradients = learner.meta_gradients(batch.support, batch.query)
    for i, g in enumerate(gradients):
        results[f"{name}/gradient/{i}"] = g.numpy()
    for field, value in zip(means._fields, means):
        results[f"{name}/{field}"] = value.numpy()
    results[f"{name}/replicas"] = np.array(strategy.num_replicas_in_sync)
# The support inputs this process's replica adapts on (the chief: the first half of the tasks).
(results["split/local_support_inputs"],) = local_support_inputs(learner, random_batch("sinusoid", CONFIGS["sinusoid"][3]))
# Two Adam meta-updates of the sinusoid (tasks 3 + 3), then the weights and Adam's state.
with strategy.scope():
    learner = DistributedLearner(build_learner("sinusoid"), strategy)
for seed in range(2):
    batch = random_batch("sinusoid", CONFIGS["sinusoid"][3], seed=seed)
    learner.train_step(batch.support, batch.query)
for i, v in enumerate(learner.variables):
    results[f"trained/weight/{i}"] = v.numpy()
for i, v in enumerate(learner.meta_optimizer.variables):
    results[f"trained/optimizer/{i}"] = v.numpy()
if is_chief(strategy):
    np.savez(sys.argv[1], **results)
