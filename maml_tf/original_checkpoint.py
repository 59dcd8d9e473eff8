"""The authors' released TF1 MiniImagenet 5-way 1-shot checkpoint, mapped onto our network.

`import_checkpoint` writes it as our checkpoint `model-<iteration>` (with fresh optimiser state)
in the run directory of the paper's command, so that command with --train=False evaluates it.
"""
import os
import re

# The paper's command for the released model (original README: 5-way 1-shot mini imagenet).
PAPER_RUN = dict(num_classes=5, meta_batch_size=4, train_update_batch_size=1, num_inner_steps=5, train_update_lr=0.01,
                 num_filters=32, max_pool=True, first_order=False, baseline=None, norm="batch_norm")

# The released files (../shared/data/original_checkpoint/SHA256SUMS): only a checkpoint with
# these bytes is called the authors' released model; any other TF1 checkpoint of the same
# network imports too, described as such.
RELEASED_SHA256 = {
    "model59000.index": "1aa0796e828abfecda13d14b8edae381ec2fc00b190a0aee985d05dba4814c4f",
    "model59000.data-00000-of-00001": "f7e14e6f544371a562441d378f4bc5765431008400cc07a16ad5ed488ea9dea0",
}

# original variable -> our variable path (see ../shared/data/original_checkpoint/SOURCE.md)
VARIABLE_MAP = {
    **{f"model/conv{i}": f"conv{i}/kernel" for i in range(1, 5)},
    "model/Variable": "conv1/bias", "model/Variable_1": "conv2/bias",
    "model/Variable_2": "conv3/bias", "model/Variable_3": "conv4/bias",
    **{f"model/{i}/beta": f"norm{i + 1}/offset" for i in range(4)},
    "model/w5": "output/kernel", "model/b5": "output/bias",
}


def read_original(prefix):
    """{original name: numpy array}; a one-line error if the files are missing or not a TF checkpoint."""
    import tensorflow as tf

    if not tf.io.gfile.exists(prefix + ".index"):
        raise FileNotFoundError(f"--checkpoint: {prefix}.index not found (give the prefix, without .index)")
    try:
        reader = tf.train.load_checkpoint(prefix)
        missing = sorted(set(VARIABLE_MAP) - set(reader.get_variable_to_shape_map()))
        if missing:
            raise ValueError(f"--checkpoint: {prefix} lacks {', '.join(missing)}: not the released MiniImagenet model")
        return {name: reader.get_tensor(name) for name in VARIABLE_MAP}
    except (tf.errors.OpError, IndexError) as e:  # cut short (IndexError), flipped bytes (DataLossError), ...
        raise ValueError(f"--checkpoint: {prefix} is damaged or not a TensorFlow checkpoint "
                         f"({type(e).__name__}: {str(e).strip().splitlines()[0][:120]})") from None


def is_released(prefix):
    """True if the checkpoint's files are byte for byte the authors' released ones (RELEASED_SHA256)."""
    import glob

    from report.files import sha256_file

    files = {os.path.basename(f): f for f in glob.glob(glob.escape(prefix) + ".*")}
    return all(name in files and sha256_file(files[name]) == digest for name, digest in RELEASED_SHA256.items())


def import_checkpoint(prefix, logdir, overwrite=False):
    """Write our checkpoint of the original weights; returns (run_dir, iteration, released):
    `released` says whether the files are the authors' released ones (run_info.json records it,
    and report.compare calls only those the authors' model). A run directory that holds a run
    of ours (a run_info.json without `imported_from`, or other checkpoints) is refused: the
    import would delete its older checkpoints and replace its record."""
    from maml_tf import evaluation, experiment
    from maml_tf.checkpoints import Checkpointer
    from maml_tf.meta_learner import MetaLearner
    from report.files import read_json_object

    match = re.search(r"model(\d+)$", os.path.basename(prefix))
    iteration = int(match.group(1)) if match else 0
    original = read_original(prefix)
    model = experiment.build_model("miniimagenet", num_classes=5, num_filters=32, max_pool=True, norm="batch_norm")
    by_path = {v.path: v for v in model.weights}
    for name, path in VARIABLE_MAP.items():
        if tuple(by_path[path].shape) != original[name].shape:
            raise ValueError(f"--checkpoint: {prefix}: {name} has shape {original[name].shape}, our {path} "
                             f"expects {tuple(by_path[path].shape)}: not the paper's MiniImagenet network")
        by_path[path].assign(original[name])
    run_dir = os.path.join(logdir, experiment.exp_string(**PAPER_RUN))
    checkpointer = Checkpointer(run_dir, MetaLearner(model, experiment.build_loss("miniimagenet", 1)[0],
                                                     update_lr=0.01, num_inner_steps=5, classification=True))
    info_path = os.path.join(run_dir, "run_info.json")
    ours = os.path.exists(info_path) and not read_json_object(info_path, "move the run directory away").get(
        "imported_from")
    others = sorted(set(checkpointer.available()) - {iteration})
    if ours or others:
        what = "a training run of maml_tf.main (its run_info.json)" if ours else f"the checkpoint model-{others[-1]}"
        raise ValueError(f"--logdir: {run_dir} holds {what}; importing there would replace it: give another --logdir")
    if iteration in checkpointer.available() and not overwrite:
        raise ValueError(f"{run_dir}/model-{iteration} exists; pass --overwrite to replace it")
    released = is_released(prefix)
    os.makedirs(run_dir, exist_ok=True)
    checkpointer.save(iteration)
    evaluation.write_json(info_path, {
        "datasource": "miniimagenet", "method": "maml", "num_classes": 5, "conv": True, "stop_grad": False,
        "num_updates": 5, "update_lr": 0.01, "pretrain_iterations": 0, "metatrain_iterations": 60000,
        "imported_from": os.path.abspath(prefix), "released_checkpoint": released})
    return run_dir, iteration, released
