"""The original's recipes, as plain arguments: per data source its run name, network, loss,
clip, samplers, test tasks and cadence. Entry points and the equivalence harness build from here."""
from maml_tf import losses, models

DATASOURCES = ("sinusoid", "omniglot", "miniimagenet")


def exp_string(num_classes, meta_batch_size, train_update_batch_size, num_inner_steps, train_update_lr,
               num_filters=64, max_pool=False, first_order=False, baseline=None, norm="batch_norm"):
    """The original main.py's run-directory name, character for character (numbers via str())."""
    name = (f"cls_{num_classes}.mbs_{meta_batch_size}.ubs_{train_update_batch_size}"
            f".numstep{num_inner_steps}.updatelr{train_update_lr}")
    if num_filters != 64:
        name += f"hidden{num_filters}"
    if max_pool:
        name += "maxpool"
    if first_order:
        name += "stopgrad"
    if baseline:
        name += baseline
    name += {"batch_norm": "batchnorm", "layer_norm": "layernorm", "None": "nonorm"}[norm]
    return name


def eval_num_inner_steps(datasource, train):
    """Inner steps scored while training (for logging) and at test, as the original chose them."""
    if not train:
        return 10
    return {"sinusoid": 5, "miniimagenet": 1, "omniglot": 10}[datasource]


def build_model(datasource, *, num_classes=5, oracle=False, conv=True, num_filters=64, max_pool=False,
                norm="batch_norm", dtype="float32"):
    """The network the original used for this data source and these options."""
    if datasource == "sinusoid":
        # input x, or (the oracle) x with the task's amplitude and phase
        return models.fc_net((3,) if oracle else (1,), (40, 40), 1, norm=norm, dtype=dtype, name="sinusoid_mlp")
    if datasource not in ("omniglot", "miniimagenet"):
        raise ValueError(f"datasource must be one of {DATASOURCES}, got {datasource!r}")
    image_shape = (28, 28, 1) if datasource == "omniglot" else (84, 84, 3)
    if not conv:
        return models.fc_net(image_shape, (256, 128, 64, 64), num_classes, norm=norm, dtype=dtype, name="fc_classifier")
    return models.conv_net(image_shape, num_classes, num_filters, max_pool, norm=norm, dtype=dtype,
                           flatten=datasource == "miniimagenet")


def build_loss(datasource, update_batch_size):
    """(loss_fn, classification) for the data source; K is the current update_batch_size."""
    if datasource == "sinusoid":
        return losses.mse, False
    return losses.summed_cross_entropy(update_batch_size), True


# The original clipped each MiniImagenet meta-gradient element to [-10, 10] before Adam.
CLIP_VALUE = {"miniimagenet": 10.0}


def build_learner(model, datasource, *, update_batch_size, update_lr, num_inner_steps, first_order=False,
                  meta_lr=1e-3, learner_class=None, conv="auto", dense="auto", shared_first_step=True,
                  jit_compile=False):
    """The meta-learner the original main() built for this data source: its loss, its clip.
    (`learner_class`: a MetaLearner subclass, e.g. the tests' per-task reference; `conv`: how
    per-task convolutions run, see `batched_forward`; `dense`: how adapted dense kernels are kept, see
    `MetaLearner`; `shared_first_step`: the first inner step's support pass convolves all tasks at
    once, see `MetaLearner`; `jit_compile`: the steps compiled by XLA.)"""
    from maml_tf.meta_learner import MetaLearner

    loss_fn, classification = build_loss(datasource, update_batch_size)
    return (learner_class or MetaLearner)(
        model, loss_fn, update_lr=update_lr, num_inner_steps=num_inner_steps, first_order=first_order,
        meta_lr=meta_lr, clip_value=CLIP_VALUE.get(datasource), classification=classification, conv=conv,
        dense=dense, shared_first_step=shared_first_step, jit_compile=jit_compile)


# MiniImagenet trained on 15 query images per class whatever K; everything else on K.
TRAIN_QUERY_PER_CLASS = {"miniimagenet": 15}


def build_samplers(datasource, *, data_dir, num_classes, update_batch_size, train, test_set=False, oracle=False):
    """(training sampler, or None when not training; evaluation sampler: the validation split,
    or the test split with `test_set`), as the original's DataGenerator drew tasks."""
    from maml_tf.sinusoid import SinusoidSampler

    k = update_batch_size
    if datasource == "sinusoid":
        sampler = SinusoidSampler(k, k, oracle=oracle)
        return sampler, sampler
    from maml_tf import few_shot_data

    eval_split = "test" if test_set else "val"
    needed = ("train", eval_split) if train else (eval_split,)
    load = few_shot_data.load_omniglot if datasource == "omniglot" else few_shot_data.load_miniimagenet
    splits = load(data_dir, needed)
    make = lambda split: few_shot_sampler(datasource, splits[split], num_classes=num_classes,  # noqa: E731
                                          update_batch_size=k, train=train)
    return (make("train") if train else None), make(eval_split)


def few_shot_sampler(datasource, classes, *, num_classes, update_batch_size, train):
    """The task sampler over one split's ClassImages: N classes, K support and (training
    MiniImagenet: 15, else K) query images per class, Omniglot classes rotated by a random
    multiple of 90 degrees, as the original's DataGenerator."""
    from maml_tf import few_shot_data

    k = update_batch_size
    query = TRAIN_QUERY_PER_CLASS.get(datasource, k) if train else k
    return few_shot_data.FewShotSampler(classes, num_classes, k, query, rotate=datasource == "omniglot")


def training_iterations(baseline, pretrain_iterations, metatrain_iterations):
    """(pretrain, metatrain) iterations: the oracle trains without meta-learning, all of them
    as pretraining iterations, as in the original."""
    if baseline == "oracle":
        return pretrain_iterations + metatrain_iterations, 0
    return pretrain_iterations, metatrain_iterations


def validation_sampler(datasource, eval_sampler):
    """What training validates on: the validation split; nothing for the sinusoid (the
    original logged no validation there)."""
    return None if datasource == "sinusoid" else eval_sampler


def test_seed(datasource):
    """The seed of the fixed test tasks: the original's test seeded numpy's global stream with 1
    (sinusoid); its image pools were drawn after Python's `random.seed(6)`."""
    return 1 if datasource == "sinusoid" else 6


def print_interval(datasource):
    """Iterations between printed training means, as the original's PRINT_INTERVAL."""
    return 1000 if datasource == "sinusoid" else 100
