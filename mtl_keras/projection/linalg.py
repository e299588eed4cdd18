"""The float64 Gram matrix the solvers of IMTL, Nash-MTL, Aligned-MTL, UPGrad and FairGrad start from.

The train step hands every projection the float32 Gram matrix K = G G^T. The
solvers below run on [T, T] matrices, so float64 costs nothing and removes the
rounding that float32 factorizations would add to ill-conditioned K (nearly
dependent gradients, norms far apart).
"""

import numpy as np

from mtl_keras.backend import tf


def float64_gram(gram):
    """(K, finite): the symmetrized float64 K and whether every entry was finite.

    A non-finite K (a NaN or Inf loss) would make a CPU factorization raise and
    end the step before the caller's non-finite check sees it: K is replaced by
    the identity then, and ``where_finite`` turns the result into NaN.
    """
    gram = tf.cast(gram, tf.float64)
    finite = tf.reduce_all(tf.math.is_finite(gram))
    eye = tf.eye(gram.shape[0], dtype=tf.float64)
    return tf.where(finite, (gram + tf.transpose(gram)) / 2.0, eye), finite


def where_finite(finite, weights):
    """float32 ``weights``, or NaN where the Gram matrix was not finite."""
    return tf.cast(tf.where(finite, weights, np.nan), tf.float32)


def norms_and_cosines(gram):
    """(n, live, C) of a float64 K: the gradient norms, n > 0, and the cosines n_i^-1 K_ij n_j^-1.

    A zero gradient has no direction: its row and column of C are zero, and
    callers decide what such a task gets.
    """
    diag = tf.linalg.diag_part(gram)
    live = diag > 0
    norms = tf.sqrt(tf.where(live, diag, 0.0))
    inverse = tf.where(live, 1.0 / tf.where(live, norms, 1.0), 0.0)
    return norms, live, gram * inverse[:, None] * inverse[None, :]
