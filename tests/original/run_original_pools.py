"""Child process: the evaluation tasks the authors' own code draws (cbfinn/maml, unchanged).

    python tests/original/run_original_pools.py JOB.json RESULT.json

JOB: {"sinusoid": [K, ...], "image_pools": [{"datasource", "folder", "root", "num_classes",
"samples", "test_set"}, ...], "num_tasks": T}; files are written relative to "root". For each sinusoid K their test() would run with
`--update_batch_size=K`: `np.random.seed(1)`, then T calls of their
`DataGenerator(2K, 1).generate(train=False)` (main.py's test loop; the inputs and outputs as
the float64 arrays it fed). For each image pool: their flags set as that test's command would
(`--datasource`, `--num_classes`, `--test_set`), `DataGenerator(samples, 1, config)` on the
folder, `random.seed(6)`, `make_data_tensor(train=False)` (main.py's order), and the filename
list it hands `tf.train.string_input_producer` (recorded by run_original_test.record_episodes,
which changes no value; per task the N classes in label order, each with `samples` files),
cut to the first T tasks.

One thing differs from running their main.py, on purpose: `os.listdir` lists sorted, the one
deliberate difference our data pipeline makes (the original's unsorted listing made its draws
depend on the file system). Nothing of their sampling changes.
"""
import json
import os
import random
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import tf1_compat  # noqa: E402
from run_original_test import record_episodes, write_json  # noqa: E402

# The DataGenerator config keys naming the folders (MiniImagenet's constructor lists both).
FOLDER_CONFIG = {"omniglot": ("data_folder",), "miniimagenet": ("metatrain_folder", "metaval_folder")}


def sorted_listdir(listdir):
    def listdir_sorted(path="."):
        return sorted(listdir(path))

    return listdir_sorted


def sinusoid_tasks(original_main, data_generator, k, num_tasks):
    original_main.FLAGS(["main.py", "--datasource=sinusoid", f"--update_batch_size={k}", "--train=False"])
    np.random.seed(1)  # main.py test()
    generator = data_generator.DataGenerator(2 * k, 1)
    xs, ys = [], []
    for _ in range(num_tasks):
        x, y, _, _ = generator.generate(train=False)
        xs.append(x[0])
        ys.append(y[0])
    return {"inputs": np.stack(xs).tolist(), "outputs": np.stack(ys).tolist()}


def image_pool(original_main, data_generator, tf, record, pool, num_tasks):
    original_main.FLAGS(["main.py", f"--datasource={pool['datasource']}", f"--num_classes={pool['num_classes']}",
                         f"--test_set={pool['test_set']}", "--train=False"])
    config = {key: pool["folder"] for key in FOLDER_CONFIG[pool["datasource"]]}
    generator = data_generator.DataGenerator(pool["samples"], 1, config=config)
    record["filenames"] = []
    random.seed(6)  # main.py, right before make_data_tensor(train=False)
    with tf.Graph().as_default():
        generator.make_data_tensor(train=False)  # its filename list: record["filenames"] (record_episodes)
    per_task = pool["num_classes"] * pool["samples"]
    return [os.path.relpath(f, pool["root"]) for f in record["filenames"][:num_tasks * per_task]]


def main(job_path, result_path):
    with open(job_path) as f:
        job = json.load(f)
    os.listdir = sorted_listdir(os.listdir)
    original_main, _ = tf1_compat.import_original_maml()
    data_generator = sys.modules["data_generator"]
    tf = sys.modules["tensorflow"]
    record = {}
    record_episodes(tf, record)
    result = {"sinusoid": {str(k): sinusoid_tasks(original_main, data_generator, k, job["num_tasks"])
                           for k in job["sinusoid"]},
              "image_pools": [image_pool(original_main, data_generator, tf, record, pool, job["num_tasks"])
                              for pool in job["image_pools"]]}
    write_json(result_path, result)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:])
