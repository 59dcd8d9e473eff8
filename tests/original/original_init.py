"""Child process: the initial weights the authors' supervised code draws (cbfinn/maml's
`construct_fc_weights` / `construct_conv_weights`, unchanged) for several networks, one process
(each TensorFlow start costs seconds).

    python tests/original/original_init.py JOB.npz RESULT.npz

JOB holds `networks`: JSON, a list of {"name", "flags" (the original main.py flags as
`--name=value` strings), "dim_input", "dim_output" (as the original main() derived them from
the data), "seed" (the graph seed)}. RESULT holds, as `<name>/<key>`, every entry of each
network's `weights` dict after its initialisers ran: each network in a graph of its own, its
flags parsed from their defaults (absl keeps values across parses otherwise).
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import tf1_compat  # noqa: E402


def main(job_path, result_path):
    networks = json.loads(str(np.load(job_path)["networks"]))
    original_main, maml = tf1_compat.import_original_maml()
    tf = sys.modules["tensorflow"]
    result = {}
    for network in networks:
        original_main.FLAGS.unparse_flags()
        original_main.FLAGS(["original_main"] + network["flags"])
        with tf.Graph().as_default():
            tf.set_random_seed(network["seed"])
            model = maml.MAML(network["dim_input"], network["dim_output"])
            with tf.variable_scope("model"):  # as construct_model builds them
                weights = model.construct_weights()
            with tf.Session() as sess:
                sess.run(tf.global_variables_initializer())
                result.update({f"{network['name']}/{key}": value for key, value in sess.run(weights).items()})
    np.savez(result_path, **result)


if __name__ == "__main__":
    main(*sys.argv[1:])
