"""Child process: the authors' own test (`main.main()` of cbfinn/maml, unchanged) on the released
MiniImagenet checkpoint, recording the episodes it drew.

    python tests/original/run_original_test.py WORKDIR CHECKPOINT_PREFIX NUM_TEST_POINTS RECORD_JSON

WORKDIR must hold `data/miniImagenet/test/<wnid>/<file>.jpg` (their DataGenerator reads
`./data/miniImagenet/...`, so it becomes the working directory; an empty `train/` is made if
missing, since their constructor lists that folder too). The child:

- makes WORKDIR/logs/<run name of the paper's command>/ with links to CHECKPOINT_PREFIX.index and
  .data-00000-of-00001 and a TF `checkpoint` state file naming it, so their
  `tf.train.latest_checkpoint` finds it;
- wraps `tf.train.string_input_producer` and `tf.random_shuffle` of the tf.compat.v1 module their
  code imports (`record_episodes`: every value stays the same) to record the filename list their
  `make_data_tensor(train=False)` built and each task's per-shot class order;
- sets `main.NUM_TEST_POINTS` (their module constant, 600 in their code) and parses their absl
  flags from the paper's test command (`PAPER_TEST_ARGS`), as running their main.py would;
- calls their `main.main()`, which restores the checkpoint, evaluates NUM_TEST_POINTS tasks and
  pickles the raw [tasks, 11] accuracies to logs/<run name>/test_ubs1_stepsize0.01.pkl;
- writes RECORD_JSON: {"filenames": [...], "shuffles": [[per-task class order] per shuffle op]}.

Their filename list holds, per task, the N classes in label order, each with 2K files (the
first K support, the next K query). Nothing of their algorithm, data pipeline or test changes.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tf1_compat  # noqa: E402

RUN_NAME = "cls_5.mbs_4.ubs_1.numstep5.updatelr0.01hidden32maxpoolbatchnorm"
# The paper's MiniImagenet 5-way 1-shot command (original README), with the test flags.
PAPER_TEST_ARGS = ["--datasource=miniimagenet", "--metatrain_iterations=60000", "--meta_batch_size=4",
                   "--update_batch_size=1", "--update_lr=0.01", "--num_updates=5", "--num_classes=5",
                   "--logdir={logdir}", "--num_filters=32", "--max_pool=True", "--train=False", "--test_set=True"]


def link_checkpoint(prefix, run_dir):
    """Links to the checkpoint files in run_dir plus the state file latest_checkpoint reads."""
    os.makedirs(run_dir, exist_ok=True)
    name = os.path.basename(prefix)
    for suffix in (".index", ".data-00000-of-00001"):
        source = os.path.abspath(prefix + suffix)
        if not os.path.isfile(source):
            raise SystemExit(f"checkpoint file missing: {source}")
        target = os.path.join(run_dir, name + suffix)
        if not os.path.lexists(target):
            os.symlink(source, target)
    with open(os.path.join(run_dir, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')


def record_episodes(tf, record):
    """Wrap two tf functions their `make_data_tensor` calls, without changing any value:

    - `tf.train.string_input_producer`: record["filenames"] = the (constant) filename list;
    - `tf.random_shuffle` (the per-shot class order): its result passes through an identity
      `tf.numpy_function` that appends each value it takes to record["shuffles"][op], op being
      the shuffle's creation index (one per shot). Each test `sess.run` runs every shuffle op
      once, so the i-th value of each op belongs to test task i.
    """
    original_producer, original_shuffle = tf.train.string_input_producer, tf.random_shuffle
    record["filenames"], record["shuffles"] = [], []

    def string_input_producer(string_tensor, *args, **kwargs):
        values = tf.get_static_value(string_tensor)
        if values is None:
            raise SystemExit("string_input_producer was given a non-constant tensor")
        record["filenames"] = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
        return original_producer(string_tensor, *args, **kwargs)

    def random_shuffle(value, *args, **kwargs):
        shuffled = original_shuffle(value, *args, **kwargs)
        values = []
        record["shuffles"].append(values)

        def remember(x):
            values.append(x.tolist())
            return x

        out = tf.numpy_function(remember, [shuffled], shuffled.dtype, stateful=True)
        out.set_shape(shuffled.get_shape())
        return out

    tf.train.string_input_producer = string_input_producer
    tf.random_shuffle = random_shuffle


def main(workdir, checkpoint, num_test_points, record_json):
    workdir, record_json = os.path.abspath(workdir), os.path.abspath(record_json)
    logdir = os.path.join(workdir, "logs")
    # Their main() parses the iteration as the digits after the first 'model' in the checkpoint path.
    if "model" in logdir:
        raise SystemExit(f"the log folder path must not contain 'model' (their main() parses it): {logdir}")
    if not os.path.isdir(os.path.join(workdir, "data", "miniImagenet", "test")):
        raise SystemExit(f"no data/miniImagenet/test in {workdir}")
    os.makedirs(os.path.join(workdir, "data", "miniImagenet", "train"), exist_ok=True)
    link_checkpoint(checkpoint, os.path.join(logdir, RUN_NAME))
    os.chdir(workdir)

    original_main, _ = tf1_compat.import_original_maml()
    tf = sys.modules["tensorflow"]
    record = {}
    record_episodes(tf, record)
    original_main.NUM_TEST_POINTS = int(num_test_points)
    original_main.FLAGS(["main.py"] + [a.format(logdir=logdir) for a in PAPER_TEST_ARGS])
    original_main.main()
    if [len(values) for values in record["shuffles"]] != [int(num_test_points)] * len(record["shuffles"]):
        raise SystemExit(f"expected each shuffle op to run once per test task, got {record['shuffles']}")
    write_json(record_json, record)


def write_json(path, data):
    """`data` as JSON at `path`, whole or not at all (written beside it, then renamed)."""
    with open(path + ".tmp", "w") as f:
        json.dump(data, f)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__.split("\n\n")[1])
    main(*sys.argv[1:])
