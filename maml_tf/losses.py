"""The original's losses and accuracy, one value per task.

Each reduces over a task's examples only (the axes after the leading ones), so the same
function scores one task ([examples, ...] -> scalar) or a whole meta-batch ([tasks, examples,
...] -> [tasks]) without a loop or `vectorized_map`: the batched meta-step and its gradients stay
plain tensor ops (which XLA can also compile).
"""
import tensorflow as tf


def mse(predictions, labels):
    """Mean squared error over the task's points (sinusoid): the original's
    mean((reshape(pred, [-1]) - reshape(label, [-1]))^2), on [..., points, outputs]."""
    predictions, labels = tf.convert_to_tensor(predictions), tf.convert_to_tensor(labels)
    if predictions.shape.rank < 2 or not predictions.shape.is_compatible_with(labels.shape):
        raise ValueError(f"mse: predictions {predictions.shape} and labels {labels.shape} must have one shape "
                         "[..., points, outputs]")
    return tf.reduce_mean(tf.square(predictions - labels), axis=[-2, -1])


def summed_cross_entropy(shots):
    """Softmax cross-entropy summed over the set and divided by K (`update_batch_size`).

    The original divided per-example losses by K and then summed them, so its gradients are N
    times those of the mean loss; the paper's step sizes (0.4, 0.1, 0.01) assume this scale.
    """

    def loss(logits, labels):
        return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits), axis=-1) / shots

    return loss


def accuracy(logits, labels):
    """The fraction of the task's examples whose arg-max logit is the labelled class."""
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), logits.dtype), axis=-1)


def zero_accuracy(outputs, labels):
    """Regression has no accuracy: zero per task (the leading axes of [..., points, outputs])."""
    del labels
    return tf.zeros(tf.shape(outputs)[:-2], outputs.dtype)
