"""Aligned-MTL: the task gradients' principal components, aligned to one scale."""

import numpy as np

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.linalg import float64_gram, where_finite

# The reference code's rank cutoff: eigenvalues of K below max * T * eps of float32 (K's precision).
_EPS = float(np.finfo(np.float32).eps)


@register
class AlignedMTL(GradientProjection):
    """Aligned-MTL: independent component alignment of the task gradients.

    Senushkin et al., "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023. With K = G G^T = V diag(lambda) V^T, the R
    eigenvalues above max(lambda) * T * eps (float32 eps, the reference
    code's rank cutoff) and sigma = sqrt(lambda) the singular values of G,

        B = sigma_R V_R diag(1 / sigma) V_R^T,   alpha = B 1,

    so that the aligned gradient matrix B G has all its R singular values equal
    to the smallest, sigma_R (condition number 1), and the update is the sum
    of its rows, sum_t alpha_t g_t (every task weighted 1, as in the
    reference code and LibMTL). ``last_weights`` holds alpha.

    K is eigendecomposed in float64 (``tf.linalg.eigh``; LibMTL calls
    ``torch.symeig``, gone from current PyTorch). The result does not depend on
    the gradients' scale. Degenerate gradients drop out with their
    eigenvalues: a zero gradient, a duplicate, exactly opposite gradients or
    more tasks than dimensions leave a rank R < T and the update aligns the R
    remaining components (two exactly opposite gradients of equal norm:
    alpha = 0); all gradients zero: alpha = 0.

    Example:
    >>> projection = AlignedMTL()
    >>> projection.combine([[2.0, 0.0], [0.0, 1.0]]).numpy().round(4).tolist()
    [1.0, 1.0]
    >>> projection.last_weights.numpy().round(4).tolist()
    [0.5, 1.0]
    """

    def __init__(self):
        self.last_weights = None

    def coefficients(self, gram, task_losses):
        num_tasks = gram.shape[0]
        gram, finite = float64_gram(gram)
        # Scale-free: divide by the trace so the eigenvalues are O(1) whatever the gradients' scale.
        trace = tf.linalg.trace(gram)
        gram = gram / tf.where(trace > 0, trace, 1.0)
        eigenvalues, vectors = tf.linalg.eigh(gram)
        kept = eigenvalues > tf.reduce_max(eigenvalues) * num_tasks * _EPS
        sigma = tf.sqrt(tf.where(kept, eigenvalues, 1.0))
        smallest = tf.reduce_min(tf.where(kept, sigma, np.inf))
        factors = tf.where(kept, smallest / sigma, 0.0)
        alpha = tf.linalg.matvec(vectors, factors * tf.reduce_sum(vectors, axis=0))
        self.last_weights = where_finite(finite, alpha)
        return self.last_weights

    def get_config(self):
        return {}
