"""The configurations and inputs that tests/test_distributed*.py step on one device and on
several (shared with the multi-worker job script tests/distributed_worker.py)."""
import keras
import numpy as np

from maml_tf import experiment
from maml_tf.distributed import DistributedLearner
from maml_tf.few_shot_data import EpisodeBatch

# float32 round-off of a sum regrouped across replicas, relative to the update's global scale.
RTOL = 1e-5

CONFIGS = {
    # name: (datasource, model options, learner options, tasks per meta-batch)
    "omniglot_5way_1shot_conv": ("omniglot", {"num_classes": 5, "num_filters": 16},
                                 {"update_batch_size": 1, "update_lr": 0.4, "num_inner_steps": 1}, 4),
    # Its hidden dense kernels adapt factored (MetaLearner dense='auto'), each replica on its own tasks.
    "omniglot_5way_1shot_nonconv": ("omniglot", {"num_classes": 5, "conv": False},
                                    {"update_batch_size": 1, "update_lr": 0.4, "num_inner_steps": 1}, 4),
    "sinusoid_first_order": ("sinusoid", {}, {"update_batch_size": 10, "update_lr": 0.01, "num_inner_steps": 2,
                                              "first_order": True}, 6),
    "sinusoid": ("sinusoid", {}, {"update_batch_size": 10, "update_lr": 0.01, "num_inner_steps": 2}, 6),
}


def random_batch(datasource, tasks, seed=0):
    """Random inputs of the data source's shapes (labels one-hot for Omniglot)."""
    rng = np.random.default_rng(seed)
    if datasource == "sinusoid":
        x = rng.uniform(-5, 5, (tasks, 20, 1)).astype(np.float32)
        y = (rng.uniform(0.1, 5, (tasks, 1, 1)) * np.sin(x - rng.uniform(0, np.pi, (tasks, 1, 1)))).astype(np.float32)
        return EpisodeBatch(x[:, :10], y[:, :10], x[:, 10:], y[:, 10:])
    images = rng.random((tasks, 10, 28, 28, 1), dtype=np.float32)
    labels = np.tile(np.eye(5, dtype=np.float32), (tasks, 2, 1))
    return EpisodeBatch(images[:, :5], labels[:, :5], images[:, 5:], labels[:, 5:])


def build_learner(name):
    """The MetaLearner of configuration `name`, initial weights from seed 1 (in a strategy's
    scope: its variables are mirrored)."""
    datasource, model_options, learner_options, _ = CONFIGS[name]
    keras.utils.set_random_seed(1)
    model = experiment.build_model(datasource, **model_options)
    return experiment.build_learner(model, datasource, **learner_options)


def learners(name, strategy):
    """The plain learner and a distributed one with the same initial weights."""
    plain = build_learner(name)
    with strategy.scope():
        replicated = build_learner(name)
    for a, b in zip(plain.model.weights, replicated.model.weights):
        b.assign(a)
    return plain, DistributedLearner(replicated, strategy)


def global_relative_difference(a, b):
    a = np.concatenate([np.ravel(v) for v in a])
    b = np.concatenate([np.ravel(v) for v in b])
    return np.linalg.norm(a - b) / np.linalg.norm(a)


def in_theory_zero(gradients):
    """Which gradients are zero in exact arithmetic (a conv bias right before batch norm: the
    norm subtracts it again) and only round-off in practice. Adam turns any such noise into a
    full step of size meta_lr, so those weights are compared only through their gradients."""
    scale = np.linalg.norm(np.concatenate([np.ravel(g) for g in gradients]))
    return [np.linalg.norm(g) < 1e-4 * scale for g in gradients]


def local_support_inputs(distributed, batch):
    """The support inputs each of this process's replicas receives from `distributed` (a
    DistributedLearner) for `batch`, in replica order."""
    import tensorflow as tf

    (support,) = distributed._split(batch.support, flag="meta_batch_size")
    strategy = distributed.strategy
    return [np.asarray(x) for x in strategy.experimental_local_results(
        strategy.run(lambda s: tf.identity(s[0]), args=(support,)))]
