"""Our fixed evaluation tasks are the ones the authors' code draws (run unchanged in a child:
`run_original_pools.py`), on a file system that lists sorted (our one deliberate difference).

- Sinusoid: their test() seeds numpy's global stream with 1 and draws each task with
  `DataGenerator(2K, 1).generate`; `SinusoidSampler.eval_pool` must give the same inputs and
  outputs, value for value (float32, as their placeholders read them).
- Omniglot (real archives) and MiniImagenet (generated images): after `random.seed(6)` their
  `make_data_tensor(train=False)` lists per task the N classes in label order with 2K files
  each (the first K support); `FewShotSampler.eval_pool` must hold the same files in the same
  roles and labels. Omniglot's rotations are not compared: theirs came from an unseeded
  `tf.multinomial`.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from maml_tf import experiment

HERE = os.path.dirname(os.path.abspath(__file__))
NUM_TASKS = 600  # their make_data_tensor always lists 600; the test reads them all
SINUSOID_K = (5, 10)
# (datasource, N, K, their --test_set): the paper's test commands' pools, and one validation split.
IMAGE_POOLS = [("omniglot", 5, 1, True), ("omniglot", 20, 5, True), ("omniglot", 5, 1, False),
               ("miniimagenet", 5, 1, True), ("miniimagenet", 5, 5, True)]


def make_miniimagenet(root, classes=12, per_class=100):
    """A small test split of flat JPEGs (only the file names matter here). 100 images per class,
    more than `random.sample`'s list-copy threshold for 2K = 10 (85), so the image draws take
    its set branch, as the real split's 600 do; Omniglot's 20 take the other."""
    for c in range(classes):
        folder = root / "miniImagenet" / "test" / f"n{90000000 + c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (84, 84), (c * 20, i * 2, 0)).save(folder / f"n{90000000 + c:08d}{i:08d}.jpg")
    return root


@pytest.fixture(scope="module")
def theirs(omniglot_prepared, tmp_path_factory):
    """Their pools, and the data folders they were drawn from."""
    mini = make_miniimagenet(tmp_path_factory.mktemp("mini"))
    roots = {"omniglot": omniglot_prepared / "omniglot_resized", "miniimagenet": mini / "miniImagenet"}
    pools = []
    for datasource, n, k, test_set in IMAGE_POOLS:
        folder = roots[datasource] / "test" if datasource == "miniimagenet" else roots[datasource]
        pools.append({"datasource": datasource, "folder": str(folder), "root": str(roots[datasource]),
                      "num_classes": n, "samples": 2 * k, "test_set": test_set})
    workdir = tmp_path_factory.mktemp("pools")
    job, result = workdir / "job.json", workdir / "result.json"
    job.write_text(json.dumps({"sinusoid": list(SINUSOID_K), "image_pools": pools, "num_tasks": NUM_TASKS}))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "run_original_pools.py"), str(job), str(result)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(result.read_text()), mini


@pytest.mark.parametrize("k", SINUSOID_K)
def test_sinusoid_test_tasks_are_the_originals(theirs, k):
    """main.py test(): np.random.seed(1); per task DataGenerator(2K, 1).generate(train=False),
    inputs [:K] support, [K:] query."""
    record = theirs[0]["sinusoid"][str(k)]
    their_x = np.asarray(record["inputs"], np.float64).astype(np.float32)
    their_y = np.asarray(record["outputs"], np.float64).astype(np.float32)
    assert their_x.shape == (NUM_TASKS, 2 * k, 1)
    _, sampler = experiment.build_samplers("sinusoid", data_dir=None, num_classes=1, update_batch_size=k, train=False)
    pool = sampler.eval_pool(NUM_TASKS, seed=experiment.test_seed("sinusoid"))
    ours_x = np.stack([np.concatenate([t.support_inputs[0], t.query_inputs[0]]) for t in pool])
    ours_y = np.stack([np.concatenate([t.support_labels[0], t.query_labels[0]]) for t in pool])
    np.testing.assert_array_equal(ours_x, their_x)
    np.testing.assert_array_equal(ours_y, their_y)


def _by_label(rows, n, k):
    """Our episode rows (set, label, turns, file) as their filename layout: per label, the K
    support files, then the K query files."""
    files = []
    for label in range(n):
        mine = [(kind, file) for kind, lab, _, file in rows if lab == label]
        assert [kind for kind, _ in mine] == ["support"] * k + ["query"] * k
        files.extend(file for _, file in mine)
    return files


@pytest.mark.parametrize("index", range(len(IMAGE_POOLS)),
                         ids=[f"{d} {n}-way {k}-shot {'test' if t else 'val'}" for d, n, k, t in IMAGE_POOLS])
def test_image_test_tasks_are_the_originals(theirs, omniglot_prepared, index):
    """data_generator.make_data_tensor(train=False) after main.py's random.seed(6): per task
    random.sample(folders, N), random.shuffle, per class random.sample(listdir, 2K). Ours as
    maml_tf.main builds it for `--train=False`."""
    record, mini = theirs
    datasource, n, k, test_set = IMAGE_POOLS[index]
    data_dir = omniglot_prepared if datasource == "omniglot" else mini
    _, sampler = experiment.build_samplers(datasource, data_dir=data_dir, num_classes=n, update_batch_size=k,
                                           train=False, test_set=test_set)
    pool = sampler.eval_pool(NUM_TASKS, seed=experiment.test_seed(datasource))
    ours = [f for rows in pool.episodes() for f in _by_label(rows, n, k)]
    their_files = record["image_pools"][index]
    assert len(their_files) == NUM_TASKS * n * 2 * k
    assert len(set(their_files[:n * 2 * k])) == n * 2 * k, "a task's files are distinct"
    assert ours == their_files
