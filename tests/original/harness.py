"""Supervised equivalence: the authors' graph and ours, same initial weights, same task batches.

`compare(config, iterations)` builds our learner exactly as `maml_tf.main` does for the paper's
command (`CONFIGS`), draws the training batches our trainer would draw (seed 0), runs the
authors' code on the same weights and batches in a child process (`run_maml.py`), runs our
training step on them, and returns the largest relative differences:

- per iteration, the pre-update support loss and the post-update query loss after the last
  inner step that both fetch with the update (the values before that iteration's update), and
  the accuracies (classification);
- the meta-gradient each update applies, from the same weights;
- the weights after the last iteration of each side's own run, relative L2 distance.

In float64 (`dtype="float64"`: the original's graph with every float32 read as float64, see
tf1_compat) the two agree to float64 round-off; in float32 to float32 round-off, as measured
by our own two implementations against each other.
"""
import functools
import json
import pathlib
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
for folder in (HERE, HERE.parent):  # child.py here; reference_maml.py in tests/
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from child import run_child  # noqa: E402
REPO = HERE.parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# The paper's commands (original README / paper), as original main.py flags.
_SINE = dict(datasource="sinusoid", meta_batch_size=25, update_batch_size=10, update_lr=0.01, num_updates=1, norm="None")
_OMNI5 = dict(datasource="omniglot", num_classes=5, meta_batch_size=32, update_batch_size=1, update_lr=0.4,
              num_updates=1)
_OMNI20 = dict(datasource="omniglot", num_classes=20, meta_batch_size=16, update_batch_size=1, update_lr=0.1,
               num_updates=5)
_MINI = dict(datasource="miniimagenet", num_classes=5, update_lr=0.01, num_updates=5, num_filters=32, max_pool=True)
CONFIGS = {
    "sinusoid MAML": _SINE,
    "sinusoid MAML, first order": {**_SINE, "stop_grad": True},
    "sinusoid pretrained": {**_SINE, "pretrain_iterations": 10 ** 6, "metatrain_iterations": 0},
    "sinusoid oracle": {**_SINE, "baseline": "oracle", "pretrain_iterations": 10 ** 6, "metatrain_iterations": 0},
    "Omniglot 5-way 1-shot": _OMNI5,
    "Omniglot 5-way 1-shot, first order": {**_OMNI5, "stop_grad": True},
    "Omniglot 20-way 1-shot": _OMNI20,
    "Omniglot 20-way 1-shot, first order": {**_OMNI20, "stop_grad": True},
    "Omniglot 5-way 1-shot, no conv": {**_OMNI5, "conv": False},
    "Omniglot 5-way 1-shot, no conv, first order": {**_OMNI5, "conv": False, "stop_grad": True},
    "MiniImagenet 5-way 1-shot": {**_MINI, "meta_batch_size": 4, "update_batch_size": 1},
    "MiniImagenet 5-way 1-shot, first order": {**_MINI, "meta_batch_size": 4, "update_batch_size": 1,
                                               "stop_grad": True},
    "MiniImagenet 5-way 5-shot": {**_MINI, "meta_batch_size": 2, "update_batch_size": 5},
    "MiniImagenet 5-way 5-shot, first order": {**_MINI, "meta_batch_size": 2, "update_batch_size": 5,
                                               "stop_grad": True},
}
DEFAULTS = dict(num_classes=5, baseline=None, pretrain_iterations=0, metatrain_iterations=15000, meta_lr=0.001,
                norm="batch_norm", num_filters=64, conv=True, max_pool=False, stop_grad=False)


def settings(config, **overrides):
    return {**DEFAULTS, **CONFIGS[config], **overrides}


def original_key(path):
    """Our variable path -> the key of the original's `weights` dict (norm: `norm/<scope>/beta`)."""
    layer, name = path.split("/")
    if layer.startswith("norm"):
        i = int(layer[4:])
        return f"norm/{i - 1}/beta"  # conv scopes '0'..'3'; fc scopes are '0', '2', '3', '4' (below)
    if layer == "output":
        return {"kernel": "w5", "bias": "b5"}[name]
    if layer.startswith("conv"):
        return layer if name == "kernel" else f"b{layer[4:]}"
    i = layer[5:]  # denseI
    return f"w{i}" if name == "kernel" else f"b{i}"


def _fc_norm_key(key):
    # forward_fc names its norm scopes '0', then str(i + 1) for the later layers.
    scope = int(key.split("/")[1])
    return key if scope == 0 else f"norm/{scope + 1}/beta"


def build_ours(s, seed=0, dtype="float32", learner_class=None):
    """Our model and learner for settings `s`, as maml_tf.main builds them (in `dtype`;
    `learner_class`: e.g. the per-task ReferenceLearner)."""
    import keras

    from maml_tf import experiment

    keras.utils.set_random_seed(seed)
    model = experiment.build_model(s["datasource"], num_classes=s["num_classes"], oracle=s["baseline"] == "oracle",
                                   conv=s["conv"], num_filters=s["num_filters"], max_pool=s["max_pool"],
                                   norm=s["norm"], dtype=dtype)
    learner = experiment.build_learner(model, s["datasource"], update_batch_size=s["update_batch_size"],
                                       update_lr=s["update_lr"], num_inner_steps=s["num_updates"],
                                       first_order=s["stop_grad"], meta_lr=s["meta_lr"], learner_class=learner_class)
    if dtype == "float64":
        # TF1's AdamOptimizer holds beta1, beta2 and epsilon as float32 tensors and casts them to
        # the variable's dtype (0.999 -> 0.99900001287...): give ours the same numbers.
        for optimizer in (learner.meta_optimizer, learner.pretrain_optimizer):
            for name in ("beta_1", "beta_2", "epsilon"):
                setattr(optimizer, name, float(np.float32(getattr(optimizer, name))))
    keys = {}
    for v in learner.variables:
        key = original_key(v.path)
        if key.startswith("norm/") and (not s["conv"] or s["datasource"] == "sinusoid"):
            key = _fc_norm_key(key)
        keys[v.path] = key
    return learner, keys


def random_miniimagenet(classes=8, per_class=20, seed=0):
    """Generated images in MiniImagenet's shape (the real ones are not available here)."""
    from maml_tf.few_shot_data import ClassImages

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(classes, per_class, 84, 84, 3), dtype=np.uint8)
    return ClassImages(images, tuple(f"n{i:08d}" for i in range(classes)))


@functools.lru_cache(maxsize=1)
def _omniglot_train(omniglot_dir):
    """The training split's images, decoded once per process (about 6-10 s for its 22,000 PNGs;
    the samplers only read them)."""
    from maml_tf import few_shot_data

    classes = few_shot_data.load_omniglot(omniglot_dir, ("train",))["train"]
    classes.images.setflags(write=False)  # shared by every later call
    return classes


def sampler_for(s, omniglot_dir=None):
    """The training sampler `maml_tf.main` uses (MiniImagenet on generated images)."""
    from maml_tf import experiment

    if s["datasource"] == "sinusoid":
        return experiment.build_samplers("sinusoid", data_dir=None, num_classes=s["num_classes"],
                                         update_batch_size=s["update_batch_size"], train=True,
                                         oracle=s["baseline"] == "oracle")[0]
    if s["datasource"] == "omniglot":
        classes = _omniglot_train(str(omniglot_dir))
    else:
        classes = random_miniimagenet()
    return experiment.few_shot_sampler(s["datasource"], classes, num_classes=s["num_classes"],
                                       update_batch_size=s["update_batch_size"], train=True)


def batches(sampler, s, iterations, seed=0, dtype="float32"):
    """[iterations] EpisodeBatches, the ones our trainer draws for iterations 0.. with `seed`
    (float32, as drawn; cast to float64, exactly, for a float64 comparison)."""
    from maml_tf.training import batch_rng

    drawn = [sampler.sample(batch_rng(seed, itr), s["meta_batch_size"]) for itr in range(iterations)]
    return cast_batches(drawn, dtype)


def cast_batches(batch_list, dtype):
    """The EpisodeBatches with every array in `dtype` (float32 -> float64 is exact)."""
    from maml_tf.episodes import EpisodeBatch

    return [EpisodeBatch(*(np.asarray(x, dtype) for x in b)) for b in batch_list]


def _flat(x):
    return x.reshape(x.shape[0], x.shape[1], -1)


def original_flags(s):
    flags = [f"--{k}={v}" for k, v in s.items() if k not in ("baseline",)]
    if s["baseline"]:
        flags.append(f"--baseline={s['baseline']}")
    return flags


def run_theirs(s, weights, batch_list, trajectory=None, float64=False):
    """Run the authors' graph in a child process; returns its result arrays and seconds.

    With `trajectory` ({key: [iterations, ...]}), each iteration starts from the given weights
    and the child returns the gradients instead of applying them (run_maml.py)."""
    # test_num_updates = num_updates: the original graph without the extra inner steps main()
    # adds for its summaries (10 for Omniglot); the update and its fetches are the same.
    job = {"flags": json.dumps(original_flags(s)), "float64": float64, "test_num_updates": s["num_updates"]}
    job.update({f"weights/{k}": v for k, v in weights.items()})
    job.update({f"trajectory/{k}": v for k, v in (trajectory or {}).items()})
    for field, ours in (("inputa", "support_inputs"), ("labela", "support_labels"), ("inputb", "query_inputs"),
                        ("labelb", "query_labels")):
        job[field] = np.stack([_flat(getattr(b, ours)) for b in batch_list])
    return run_child("run_maml.py", job)


def _gradient_functions(learner):
    """Compiled (meta-gradient, pretrain-gradient) of the learner: what each update applies."""
    import tensorflow as tf

    return (tf.function(lambda support, query: learner.meta_gradients(support, query, score_every_step=False)[1],
                        autograph=False),
            tf.function(lambda support: learner.pretrain_gradients(support)[1], autograph=False))


def run_ours(learner, s, batch_list, keys, record=True):
    """Our training steps on the batches (the pretrain step while itr < pretrain_iterations, as
    maml_tf.training). With `record`, also the weights before and the gradient of every update."""
    meta_gradients, pretrain_gradients = _gradient_functions(learner)
    out = {"pre_loss": [], "post_loss": [], "pre_accuracy": [], "post_accuracy": []}
    weights, grads = [], []
    start = time.perf_counter()
    for itr, b in enumerate(batch_list):
        pretraining = itr < s["pretrain_iterations"] or s["baseline"] == "oracle"
        if record:
            weights.append([v.numpy() for v in learner.variables])
            grads.append([g.numpy() for g in (pretrain_gradients(b.support) if pretraining
                                              else meta_gradients(b.support, b.query))])
        if pretraining:
            out["pre_loss"].append(float(learner.pretrain_step(b.support)))
            continue
        m = learner.train_step(b.support, b.query)
        for key, value in (("pre_loss", m.support_loss), ("post_loss", m.query_losses[-1]),
                           ("pre_accuracy", m.support_accuracy), ("post_accuracy", m.query_accuracies[-1])):
            out[key].append(float(value))
    seconds = time.perf_counter() - start
    result = {k: np.asarray(v) for k, v in out.items() if v}
    names = [keys[v.path] for v in learner.variables]
    if record:
        result["trajectory"] = {k: np.stack([w[i] for w in weights]) for i, k in enumerate(names)}
        result["grads"] = {k: np.stack([g[i] for g in grads]) for i, k in enumerate(names)}
    result["final"] = {k: v.numpy() for k, v in zip(names, learner.variables)}
    return result, seconds


def gradients_at(learner, s, batch_list, keys, trajectory):
    """{key: [iterations, ...]}: the gradient each update would apply, from the given weights."""
    meta_gradients, pretrain_gradients = _gradient_functions(learner)
    names = [keys[v.path] for v in learner.variables]
    grads = []
    for itr, b in enumerate(batch_list):
        for name, v in zip(names, learner.variables):
            v.assign(trajectory[name][itr])
        pretraining = itr < s["pretrain_iterations"] or s["baseline"] == "oracle"
        grads.append([g.numpy() for g in (pretrain_gradients(b.support) if pretraining
                                          else meta_gradients(b.support, b.query))])
    return {k: np.stack([g[i] for g in grads]) for i, k in enumerate(names)}


def _rel(a, b, floor=1e-6):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


def _weights_rel(ours, theirs):
    """||ours - theirs|| / ||theirs||, all variables as one vector."""
    diff = sum(float(np.sum(np.square(ours[k] - theirs[k]))) for k in ours)
    return float(np.sqrt(diff / sum(float(np.sum(np.square(theirs[k]))) for k in ours)))


def _grads_rel(ours, theirs):
    """max over iterations of ||g_ours - g_theirs|| / ||g_theirs||, all variables as one vector.

    Per element it would be meaningless for the biases that precede batch norm: their exact
    gradient is zero, so both sides hold only round-off there."""
    diff = sum(np.sum(np.square((ours[k] - theirs[k]).reshape(len(ours[k]), -1)), axis=1) for k in ours)
    norm = sum(np.sum(np.square(theirs[k].reshape(len(theirs[k]), -1)), axis=1) for k in ours)
    return float(np.max(np.sqrt(diff / norm)))


def compare(config, iterations, omniglot_dir=None, seed=0, free_running=True, reference=True, dtype="float32",
            reference_free=None, exact=False, **overrides):
    """Both implementations on `iterations` training batches; a dict of differences and timings.

    Same weights (every iteration starts both from our weights): `loss` (pre- and post-update,
    max relative), `accuracy` (max absolute), `gradient` (the meta-gradient each update applies,
    relative L2 over all variables, the largest over iterations). Free running (`free_running`;
    each from the same initial weights on its own trajectory): `free_loss`, `free_weights`
    (relative L2) after the last iteration, and `reference_weights`, our per-task reference
    path against our default batched path (`reference_free`; default: as `free_running`).
    With `reference`, `reference_gradient`: the same two at the same weights, the round-off
    scale of two correct float32 implementations (`reference_vs_theirs_gradient`: the per-task path against theirs).
    With `exact` (float32), `exact_gradient` and `theirs_exact_gradient`: ours and theirs against
    the exact meta-gradient at the same weights and batches (ours in float64, which equals theirs
    in float64 to round-off), i.e. how far float32 round-off moves each.
    """
    s = settings(config, **overrides)
    learner, keys = build_ours(s, seed, dtype)
    initial = {keys[v.path]: v.numpy() for v in learner.variables}
    batch_list = batches(sampler_for(s, omniglot_dir), s, iterations, seed, dtype)
    ours, our_seconds = run_ours(learner, s, batch_list, keys)
    f64 = dtype == "float64"
    forced, their_seconds = run_theirs(s, initial, batch_list, trajectory=ours["trajectory"], float64=f64)
    free = run_theirs(s, initial, batch_list, float64=f64)[0] if free_running else None
    result = {"config": config, "iterations": iterations, "ours_seconds": our_seconds,
              "theirs_seconds": their_seconds}
    losses = [(ours["pre_loss"], forced["pre_loss"])]
    if "post_loss" in ours:
        losses.append((ours["post_loss"], forced["post_loss"][:, -1]))
    result["loss"] = max(_rel(a, b) for a, b in losses)
    if "pre_accuracy" in ours and "pre_accuracy" in forced:
        result["accuracy"] = float(max(np.max(np.abs(ours["pre_accuracy"] - forced["pre_accuracy"])),
                                       np.max(np.abs(ours["post_accuracy"] - forced["post_accuracy"][:, -1]))))
    result["gradient"] = _grads_rel(ours["grads"], {k: forced["grad/" + k] for k in ours["grads"]})
    if free is not None:
        result["free_loss"] = _rel(ours["pre_loss"], free["pre_loss"])
        result["free_weights"] = _weights_rel(ours["final"], {k: free["final/" + k] for k in ours["final"]})
    reference_free = free_running if reference_free is None else reference_free
    if reference or reference_free:
        from reference_maml import ReferenceLearner

        ref, _ = build_ours(s, seed, dtype, learner_class=ReferenceLearner)
    if reference_free:
        result["reference_weights"] = _weights_rel(run_ours(ref, s, batch_list, keys, record=False)[0]["final"],
                                                   ours["final"])
    if reference:
        ref_grads = gradients_at(ref, s, batch_list, keys, ours["trajectory"])
        result["reference_gradient"] = _grads_rel(ref_grads, ours["grads"])
        result["reference_vs_theirs_gradient"] = _grads_rel(ref_grads, {k: forced["grad/" + k] for k in ref_grads})
    if exact:
        exact_learner, _ = build_ours(s, seed, "float64")
        exact_grads = gradients_at(exact_learner, s, cast_batches(batch_list, "float64"), keys,
                                   {k: np.asarray(v, "float64") for k, v in ours["trajectory"].items()})
        result["exact_gradient"] = _grads_rel(ours["grads"], exact_grads)
        result["theirs_exact_gradient"] = _grads_rel({k: forced["grad/" + k] for k in exact_grads}, exact_grads)
    result["weights_moved"] = _weights_rel(initial, ours["final"])  # > 0: training moved them
    return result
