"""Plain-argument wiring shared by the entry points: run names, models and losses per data source."""
from maml_tf import losses, models

DATASOURCES = ("sinusoid", "omniglot", "miniimagenet")


def exp_string(num_classes, meta_batch_size, train_update_batch_size, num_updates, train_update_lr,
               num_filters=64, max_pool=False, stop_grad=False, baseline=None, norm="batch_norm"):
    """The original main.py's run-directory name, character for character (numbers via str())."""
    name = (f"cls_{num_classes}.mbs_{meta_batch_size}.ubs_{train_update_batch_size}"
            f".numstep{num_updates}.updatelr{train_update_lr}")
    if num_filters != 64:
        name += f"hidden{num_filters}"
    if max_pool:
        name += "maxpool"
    if stop_grad:
        name += "stopgrad"
    if baseline:
        name += baseline
    name += {"batch_norm": "batchnorm", "layer_norm": "layernorm", "None": "nonorm"}[norm]
    return name


def test_num_updates(datasource, train):
    """Inner steps scored while training (for logging) and at test, as the original chose them."""
    if not train:
        return 10
    return {"sinusoid": 5, "miniimagenet": 1, "omniglot": 10}[datasource]


def build_model(datasource, *, num_classes=5, input_shape=None, conv=True, num_filters=64, max_pool=False,
                norm="batch_norm", dtype="float32"):
    """The network the original used for this data source and these options."""
    if datasource == "sinusoid":
        return models.fc_net(input_shape or (1,), (40, 40), 1, norm=norm, dtype=dtype, name="sinusoid_mlp")
    if datasource not in ("omniglot", "miniimagenet"):
        raise ValueError(f"datasource must be one of {DATASOURCES}, got {datasource!r}")
    image_shape = (28, 28, 1) if datasource == "omniglot" else (84, 84, 3)
    if not conv:
        return models.fc_net(image_shape, (256, 128, 64, 64), num_classes, norm=norm, dtype=dtype, name="fc_classifier")
    return models.conv_net(image_shape, num_classes, num_filters, max_pool, norm=norm, dtype=dtype)


def build_loss(datasource, update_batch_size):
    """(loss_fn, classification) for the data source; K is the current update_batch_size."""
    if datasource == "sinusoid":
        return losses.mse, False
    return losses.summed_cross_entropy(update_batch_size), True


# The original clipped each MiniImagenet meta-gradient element to [-10, 10] before Adam.
CLIP_VALUE = {"miniimagenet": 10.0}


def build_learner(model, datasource, *, update_batch_size, update_lr, num_updates, stop_grad=False, meta_lr=1e-3):
    """The meta-learner the original main() built for this data source: its loss, its clip."""
    from maml_tf.meta_learner import MetaLearner

    loss_fn, classification = build_loss(datasource, update_batch_size)
    return MetaLearner(model, loss_fn, update_lr=update_lr, num_updates=num_updates, stop_grad=stop_grad,
                       meta_lr=meta_lr, clip_value=CLIP_VALUE.get(datasource), classification=classification)
