"""The Gram matrix of the task gradients: all a gradient projection needs to know of them."""

from mtl_keras.backend import tf


def gram_matrix(gradients):
    """K = G G^T for the [T, P] task gradients, in float32 whatever their dtype.

    Args:
        gradients: the task gradients [T, P] (a tensor or nested lists).

    Returns:
        The Gram matrix [T, T], float32.

    Example:
    >>> gram_matrix([[1.0, 0.0], [1.0, 2.0]]).numpy().tolist()
    [[1.0, 1.0], [1.0, 5.0]]
    """
    gradients = tf.cast(gradients, tf.float32)
    return tf.matmul(gradients, gradients, transpose_b=True)
