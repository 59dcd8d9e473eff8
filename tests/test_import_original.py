"""The authors' released checkpoint: every variable maps, and our forward pass on it equals an
independent numpy implementation of the original network."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from maml_tf import experiment
from maml_tf import original_checkpoint as import_original
from maml_tf.checkpoints import Checkpointer
from maml_tf.meta_learner import MetaLearner


@pytest.fixture(scope="module")
def checkpoint(shared_data):
    prefix = shared_data / "original_checkpoint" / "model59000"
    assert (shared_data / "original_checkpoint" / "model59000.index").exists(), "released checkpoint missing"
    return str(prefix)


@pytest.fixture(scope="module")
def imported(checkpoint, tmp_path_factory):
    logdir = tmp_path_factory.mktemp("orig")
    run_dir, iteration, released = import_original.import_checkpoint(checkpoint, str(logdir))
    assert released  # the files of ../shared/data/original_checkpoint are the released ones
    return logdir, run_dir, iteration


def test_every_original_variable_maps_with_its_shape(checkpoint):
    import tensorflow as tf

    names = {name for name, _ in tf.train.list_variables(checkpoint)}
    assert names == set(import_original.VARIABLE_MAP)  # nothing left over, nothing missing
    model = experiment.build_model("miniimagenet", num_filters=32, max_pool=True)
    ours = {v.path: tuple(v.shape) for v in model.weights}
    assert set(ours) == set(import_original.VARIABLE_MAP.values())
    for name, shape in tf.train.list_variables(checkpoint):
        assert ours[import_original.VARIABLE_MAP[name]] == tuple(shape), name


def test_run_directory_is_the_papers(imported):
    _, run_dir, iteration = imported
    assert os.path.basename(run_dir) == "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm"
    assert iteration == 59000


def _numpy_original_forward(w, x):
    """The original forward_conv for MiniImagenet, from its definition (utils.conv_block)."""
    h = x
    for i in range(4):
        kernel = w[f"model/conv{i + 1}"]
        bias = w["model/Variable" + ("" if i == 0 else f"_{i}")]
        padded = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))  # 'SAME', 3x3, stride 1
        height, width = h.shape[1:3]
        conv = sum(padded[:, dy:dy + height, dx:dx + width, :] @ kernel[dy, dx] for dy in range(3) for dx in range(3))
        conv = conv + bias
        mean = conv.mean(axis=(0, 1, 2))
        var = conv.var(axis=(0, 1, 2))
        normed = np.maximum((conv - mean) / np.sqrt(var + 1e-3) + w[f"model/{i}/beta"], 0)
        hh, ww = normed.shape[1] // 2, normed.shape[2] // 2  # 2x2 max-pool, 'VALID'
        h = normed[:, :2 * hh, :2 * ww].reshape(len(x), hh, 2, ww, 2, -1).max(axis=(2, 4))
    return h.reshape(len(x), -1) @ w["model/w5"] + w["model/b5"]


def test_forward_equals_numpy_implementation_of_the_original(checkpoint, imported):
    """The imported model's output on 5 images equals the original's forward pass written out in
    numpy (float64) on the weights read straight from the released checkpoint."""
    _, run_dir, iteration = imported
    model = experiment.build_model("miniimagenet", num_filters=32, max_pool=True)
    learner = MetaLearner(model, experiment.build_loss("miniimagenet", 1)[0], update_lr=0.01, num_inner_steps=5,
                          classification=True)
    assert Checkpointer(run_dir, learner).restore(-1, required=True) == iteration
    x = np.random.default_rng(0).uniform(0, 1, (5, 84, 84, 3)).astype(np.float32)
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint)  # the released file itself, not our reading of it
    original = {name: reader.get_tensor(name).astype(np.float64) for name, _ in tf.train.list_variables(checkpoint)}
    expected = _numpy_original_forward(original, x.astype(np.float64))
    np.testing.assert_allclose(model(x).numpy(), expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected).max() > 0.1  # a real signal, not a degenerate all-zero output


def test_import_refuses_a_run_of_ours_and_tells_other_checkpoints_from_the_released_one(checkpoint, tmp_path):
    """Importing into a run directory that holds a training run of ours (its run_info.json, or
    other checkpoints) is refused, leaving it untouched (the import would delete its older
    checkpoints and replace its record). A TF1 checkpoint of the same network whose bytes are not
    the released files imports, recorded as such: report.compare does not call it the authors'."""
    import json

    import tensorflow as tf

    run_dir = tmp_path / "logs" / "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm"
    run_dir.mkdir(parents=True)
    (run_dir / "run_info.json").write_text(json.dumps({"datasource": "miniimagenet", "starts": [{"iteration": 0}]}))
    with pytest.raises(ValueError, match=r"^--logdir: .* holds a training run of maml_tf.main"):
        import_original.import_checkpoint(checkpoint, str(tmp_path / "logs"))
    assert sorted(os.listdir(run_dir)) == ["run_info.json"]
    (run_dir / "run_info.json").unlink()
    (run_dir / "model-1000.index").write_bytes(b"")  # a checkpoint of ours, whatever its state
    with pytest.raises(ValueError, match=r"^--logdir: .* holds the checkpoint model-1000"):
        import_original.import_checkpoint(checkpoint, str(tmp_path / "logs"))
    assert sorted(os.listdir(run_dir)) == ["model-1000.index"]
    # Other weights under the authors' variable names: imported, not called theirs.
    reader = tf.train.load_checkpoint(checkpoint)
    variables = {name: tf.Variable(reader.get_tensor(name) * 0.5) for name in import_original.VARIABLE_MAP}
    other = tmp_path / "other" / "model100"
    _write_tf1_checkpoint(variables, str(other))
    assert not import_original.is_released(str(other)) and import_original.is_released(checkpoint)
    run_dir2, iteration, released = import_original.import_checkpoint(str(other), str(tmp_path / "other_logs"))
    assert (iteration, released) == (100, False)
    assert json.loads(open(os.path.join(run_dir2, "run_info.json")).read())["released_checkpoint"] is False
    from report import compare
    result = compare.Result.__new__(compare.Result)
    result.info = {"imported_from": str(other), "released_checkpoint": False, "test_pool": "original"}
    result.paper, result.rows = None, None
    assert result.caveats == ["an imported TF1 checkpoint, not the authors' released files"]


def _write_tf1_checkpoint(variables, prefix):
    """A checkpoint keyed by the variables' plain names (as TF1's Saver wrote the authors')."""
    import tensorflow as tf

    names = list(variables)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[variables[n].read_value() for n in names])


def test_import_refuses_to_overwrite_and_rejects_bad_files(checkpoint, imported, tmp_path):
    logdir, _, _ = imported
    with pytest.raises(ValueError, match="--overwrite"):
        import_original.import_checkpoint(checkpoint, str(logdir))
    with pytest.raises(FileNotFoundError, match="not found"):
        import_original.import_checkpoint(str(tmp_path / "model1"), str(tmp_path))
    (tmp_path / "model2.index").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is damaged or not a TensorFlow checkpoint"):
        import_original.import_checkpoint(str(tmp_path / "model2"), str(tmp_path))


def _generated_miniimagenet(root, classes=5, per_class=4):
    """Random 84x84 JPEGs in the prepared layout (no ImageNet images exist here)."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / "miniImagenet" / "test" / f"n0{c:07d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (84, 84, 3), dtype=np.uint8)).save(folder / f"n0{c:07d}{i:08d}.jpg")


def test_papers_test_command_evaluates_the_imported_model(imported, tmp_path, repo_root):
    logdir, run_dir, _ = imported
    _generated_miniimagenet(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "maml_tf.main", "--flagfile=flags/miniimagenet_1shot_test.flags", f"--logdir={logdir}",
         f"--data_dir={tmp_path}", "--num_test_tasks=3"],
        cwd=repo_root, capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model-59000" in result.stdout
    assert os.path.exists(os.path.join(run_dir, "test_ubs1_stepsize0.01.csv"))
    # report.compare: the paper's row, the run said to be the authors' model (not "partway").
    from report import compare

    row = compare.table([compare.Result(os.path.join(run_dir, "test_ubs1_stepsize0.01.csv"))]).splitlines()[2]
    assert row.startswith("| MiniImagenet 5-way 1-shot | ") and "[the authors' released checkpoint; 3 test tasks" in row


def test_an_unusable_logdir_is_one_line(checkpoint, tmp_path, repo_root):
    """An OSError while importing (here --logdir under a file) ends in one line naming the path,
    not a traceback (the command caught only ValueError and FileNotFoundError)."""
    (tmp_path / "file").write_text("x")
    result = subprocess.run([sys.executable, "-m", "maml_tf.import_original", f"--checkpoint={checkpoint}",
                             f"--logdir={tmp_path / 'file' / 'logs'}"], cwd=repo_root, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("maml_tf.import_original: error: Not a directory") and str(tmp_path / "file") in last, last
