"""The original's losses. Each returns one scalar per task."""
import tensorflow as tf


def mse(predictions, labels):
    """Mean squared error over the task's points (sinusoid)."""
    return tf.reduce_mean(tf.square(tf.reshape(predictions, [-1]) - tf.reshape(labels, [-1])))


def summed_cross_entropy(shots):
    """Softmax cross-entropy summed over the set and divided by K (`update_batch_size`).

    The original divided per-example losses by K and then summed them, so its gradients are N
    times those of the mean loss; the paper's step sizes (0.4, 0.1, 0.01) assume this scale.
    """

    def loss(logits, labels):
        return tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)) / shots

    return loss


def accuracy(logits, labels):
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), tf.argmax(labels, -1)), logits.dtype))
