"""Child process: the initial weights the authors' supervised code draws (cbfinn/maml's
`construct_fc_weights` / `construct_conv_weights`, unchanged) under the given flags.

    python tests/original/original_init.py JOB.npz RESULT.npz

JOB holds `flags` (the original main.py flags, as `--name=value` lines in JSON), `dim_input`
and `dim_output` (as the original main() derived them from the data) and `seed` (the graph
seed). RESULT holds every entry of the original's `weights` dict after its initialisers ran.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import tf1_compat  # noqa: E402


def main(job_path, result_path):
    job = dict(np.load(job_path))
    original_main, maml = tf1_compat.import_original_maml()
    tf = sys.modules["tensorflow"]
    original_main.FLAGS(["original_main"] + json.loads(str(job["flags"])))
    tf.set_random_seed(int(job["seed"]))
    model = maml.MAML(int(job["dim_input"]), int(job["dim_output"]))
    with tf.variable_scope("model"):  # as construct_model builds them
        weights = model.construct_weights()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        np.savez(result_path, **sess.run(weights))


if __name__ == "__main__":
    main(*sys.argv[1:])
