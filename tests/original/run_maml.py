"""Child process: the authors' supervised MAML graph (cbfinn/maml, unchanged) on given weights
and task batches.

    python tests/original/run_maml.py JOB.npz RESULT.npz

JOB holds `flags` (the original main.py flags, as `--name=value` lines), `weights/<key>` (the
original `weights` dict keys, norm offsets as `norm/<scope>/beta`) and the batches `inputa`,
`labela`, `inputb`, `labelb` shaped [iterations, tasks, examples, features]. For each iteration
it runs what the original `train()` ran: `pretrain_op` while `itr < pretrain_iterations`, else
`metatrain_op`, fetching the pre-update and post-update losses and accuracies in the same
`sess.run` (so they are the values before that update). RESULT holds those per iteration and
the weights after the last one. Graph, losses, optimiser and clipping are the original's.

Optional `test_num_updates` in JOB overrides main()'s value (10 for Omniglot): the training
graph then computes fewer of the extra inner steps whose losses only its summaries fetched.

With `trajectory/<key>` arrays [iterations, ...] in JOB, every iteration instead starts from
the given weights and nothing is applied: RESULT then holds, per iteration, the gradient the
update would apply (`metatrain_op`'s own `compute_gradients`, before the MiniImagenet clip; for
`pretrain_op`, the gradient of `total_loss1`) as `grad/<key>`, with the same losses.
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
    original_main, maml = tf1_compat.import_original_maml(float64=bool(job.get("float64", False)))
    tf = sys.modules["tensorflow"]
    FLAGS = original_main.FLAGS
    FLAGS(["original_main"] + json.loads(str(job["flags"])))
    if FLAGS.baseline == "oracle":  # as the original main() did
        FLAGS.pretrain_iterations += FLAGS.metatrain_iterations
        FLAGS.metatrain_iterations = 0
    # main() builds max(test_num_updates, num_updates) inner steps into the training graph; the
    # steps past num_updates feed only its summaries, never metatrain_op. A job may ask for
    # fewer (`test_num_updates`): the same update from a smaller graph.
    test_num_updates = int(job["test_num_updates"]) if "test_num_updates" in job else \
        {"sinusoid": 5, "miniimagenet": 1}.get(FLAGS.datasource, 10)  # main(), training
    inputa = job["inputa"]
    dim_input = inputa.shape[-1]
    dim_output = job["labela"].shape[-1]

    model = maml.MAML(dim_input, dim_output, test_num_updates=test_num_updates)
    # Static shapes, as main() sliced them from its data tensors (batch norm needs the rank).
    tensors = {name: tf.placeholder(tf.float32, job[name].shape[1:], name=name)  # float64 in float64 mode
               for name in ("inputa", "labela", "inputb", "labelb")}
    model.construct_model(input_tensors=tensors, prefix="metatrain_")
    classification = model.classification
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    variables = dict(model.weights)
    variables.update({"norm/" + v.op.name[len("model/"):]: v for v in tf.trainable_variables() if "beta" in v.op.name})
    if set(variables) != {k[len("weights/"):] for k in job if k.startswith("weights/")}:
        raise SystemExit(f"weight keys differ: original {sorted(variables)}")
    for key, var in variables.items():
        var.load(job["weights/" + key], sess)

    steps = FLAGS.num_updates
    fetch = {"pre_loss": model.total_loss1, "post_loss": model.total_losses2[:steps]}
    if classification:
        fetch.update(pre_accuracy=model.total_accuracy1, post_accuracy=model.total_accuracies2[:steps])
    keys = sorted(variables)
    forced = any(k.startswith("trajectory/") for k in job)
    if forced:  # the gradient each update would apply: metatrain_op's own compute_gradients, or pretrain_op's loss
        meta_grads = {v.name: g for g, v in model.gvs} if hasattr(model, "gvs") else {}
        trainable = tf.trainable_variables()
        pre_grads = {v.name: g for v, g in zip(trainable, tf.gradients(model.total_loss1, trainable))}
    out = {key: [] for key in fetch}
    out.update({"grad/" + key: [] for key in keys} if forced else {})
    for itr in range(len(inputa)):
        feed = {tensors[name]: job[name][itr] for name in tensors}
        pretraining = itr < FLAGS.pretrain_iterations
        if forced:  # every iteration starts from the given weights; nothing is applied
            for key in keys:
                variables[key].load(job["trajectory/" + key][itr], sess)
            grads = pre_grads if pretraining else meta_grads
            values = sess.run({**fetch, **{"grad/" + k: grads[variables[k].name] for k in keys}}, feed)
        else:
            values = sess.run([model.pretrain_op if pretraining else model.metatrain_op, fetch], feed)[1]
        for key, value in values.items():
            out[key].append(value)
    result = {key: np.asarray(value) for key, value in out.items()}
    result.update({"final/" + key: sess.run(var) for key, var in variables.items()})
    np.savez(result_path, **result)


if __name__ == "__main__":
    main(*sys.argv[1:])
