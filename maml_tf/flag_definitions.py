"""maml_tf.main's command-line flags: the original main.py's (same names, defaults and help)
and ours, defined by `define_flags` on absl's global FLAGS (the entry point) or on a FlagValues of
one's own (report.compare reads a paper command with them, leaving the running program's flags
as they are)."""
from report import distribution

# Flags that describe what a run trains; resuming with another value is refused (iteration
# counts may change: a run can be extended; so may paths, logging and the test flags).
TRAINING_FLAGS = ("datasource", "num_classes", "baseline", "meta_batch_size", "meta_lr", "update_batch_size",
                  "update_lr", "num_updates", "norm", "num_filters", "conv", "max_pool", "stop_grad", "seed")


def define_flags(flags, flag_values=None):
    """Define maml_tf.main's flags in `flag_values` (absl's global FLAGS when None), attributed to
    the calling module (so `python -m maml_tf.main --help` lists them)."""
    flags.disclaim_key_flags()
    where = {} if flag_values is None else {"flag_values": flag_values}
    ## Dataset/method options
    flags.DEFINE_enum("datasource", "sinusoid", ["sinusoid", "omniglot", "miniimagenet"], "sinusoid or omniglot or miniimagenet", **where)
    flags.DEFINE_integer("num_classes", 5, "number of classes used in classification (e.g. 5-way classification).", **where)
    flags.DEFINE_enum("baseline", None, ["oracle"], "oracle, or None (oracle: the sinusoid's amplitude and phase are inputs)", **where)
    ## Training options
    flags.DEFINE_integer("pretrain_iterations", 0, "number of pre-training iterations.", **where)
    flags.DEFINE_integer("metatrain_iterations", 15000, "number of metatraining iterations.", **where)
    flags.DEFINE_integer("meta_batch_size", 25, "number of tasks sampled per meta-update", **where)
    flags.DEFINE_float("meta_lr", 0.001, "the base learning rate of the generator", **where)
    flags.DEFINE_integer("update_batch_size", 5, "number of examples used for inner gradient update (K for K-shot learning).", **where)
    flags.DEFINE_float("update_lr", 1e-3, "step size alpha for inner gradient update.", **where)
    flags.DEFINE_integer("num_updates", 1, "number of inner gradient updates during training.", **where)
    ## Model options
    flags.DEFINE_enum("norm", "batch_norm", ["batch_norm", "layer_norm", "None"], "batch_norm, layer_norm, or None", **where)
    flags.DEFINE_integer("num_filters", 64, "number of filters for conv nets -- 32 for miniimagenet, 64 for omiglot.", **where)
    flags.DEFINE_bool("conv", True, "whether or not to use a convolutional network, only applicable in some cases", **where)
    flags.DEFINE_enum("conv_method", "auto", ["auto", "calibrate", "im2col", "per_task", "grouped"],
                      "how convolutions with per-task weights run (all compute the same; speed differs by host): "
                      "'auto' picks per layer by a size rule, 'calibrate' times every method on each layer's real "
                      "shapes at start and keeps the fastest (a few seconds), or one method for all layers "
                      "('grouped' needs float32 and TF's default oneDNN kernels for its gradients).", **where)
    flags.DEFINE_enum("dense_method", "auto", ["auto", "materialised", "low_rank"],
                      "how dense layers' adapted kernels are kept (the same function; speed and float32 round-off "
                      "differ): 'auto' keeps a kernel as the shared kernel plus per-task low-rank factors where they "
                      "hold at most a quarter of its elements (the non-conv Omniglot net's hidden layers), else one "
                      "[tasks, in, out] kernel per task; or one way for all dense layers (benchmarks/README.md, 'Factored dense kernels').", **where)
    flags.DEFINE_bool("jit_compile", None,
                      "compile the meta-steps and the test's adaptation with XLA (tf.function(jit_compile=True)): the "
                      "same computation to float32 round-off, faster or slower depending on the host and the network "
                      "(README: speed). Unset (default): a training run with at least 1000 iterations left, on one "
                      "device, "
                      "times its step both ways on its first batch (seconds; a minute or two for MiniImagenet) and "
                      "keeps XLA if it is more than 5 % faster; shorter runs and tests run graphs. --jit_compile / --nojit_compile decide. "
                      "XLA is not with --distribute or --conv_method=grouped, nor for second-order meta-training "
                      "with --max_pool.", **where)
    flags.DEFINE_bool("max_pool", False, "Whether or not to use max pooling rather than strided convolutions", **where)
    flags.DEFINE_bool("stop_grad", False, "if True, do not use second derivatives in meta-optimization (for speed)", **where)
    ## Logging, saving, and testing options
    flags.DEFINE_bool("log", True, "if false, do not log summaries, for debugging code.", **where)
    flags.DEFINE_string("logdir", "/tmp/data", "directory for summaries and checkpoints.", **where)
    flags.DEFINE_bool("resume", True, "resume training if there is a model available", **where)
    flags.DEFINE_bool("train", True, "True to train, False to test.", **where)
    flags.DEFINE_integer("test_iter", -1, "iteration to load model (-1 for latest model)", **where)
    flags.DEFINE_bool("test_set", False, "Set to true to test on the the test set, False for the validation set.", **where)
    flags.DEFINE_integer("train_update_batch_size", -1, "number of examples used for gradient update during training (use if you want to test with a different number).", **where)
    flags.DEFINE_float("train_update_lr", -1, "value of inner gradient step step during training. (use if you want to test with a different value)", **where)
    ## Added by maml-tf
    flags.DEFINE_string("data_dir", "./data", "folder holding omniglot_resized/ and miniImagenet/ (see data_prep).", **where)
    flags.DEFINE_integer("seed", 0, "seed for initial weights and training tasks (a resumed run draws the same tasks).", **where)
    flags.DEFINE_integer("num_test_tasks", 600, "tasks in the test protocol (the original: 600; fewer only for smoke tests)", **where)
    flags.DEFINE_integer("test_tasks_per_call", 1,
                         "with --train=False (refused when training): tasks adapted together per call (per replica) "
                         "through the batched path; 1 is the original's one at a time. Each task's numbers are the "
                         "same up to float32 round-off (an accuracy can flip where two logits nearly tie); 40 made the "
                         "sinusoid test 11-20x faster and Omniglot 5-way 2.2-2.8x (benchmarks/README.md).", **where)
    flags.DEFINE_string("test_tasks_file", None, "with --train=False: evaluate exactly the tasks of this episode list "
                        "(Omniglot, MiniImagenet; format: maml_tf/episode_list.py) instead of the fixed pool, the original's", **where)
    flags.DEFINE_string("write_test_tasks", None, "with --train=False: also write the tasks being evaluated (the fixed "
                        "pool or --test_tasks_file) to this file as an episode list", **where)
    distribution.define_flags(flags, flag_values)
