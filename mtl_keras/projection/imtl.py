"""IMTL-G: the update whose projection on every task's unit gradient is the same."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.linalg import float64_gram, norms_and_cosines, where_finite

# Singular values below this fraction of the largest are float32 rounding of K, not information.
RCOND = 1e-6


@register
class IMTL(GradientProjection):
    """Impartial multi-task learning, gradient part (IMTL-G).

    Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021. With unit
    gradients u_t = g_t / ||g_t||, the update g = sum_t alpha_t g_t,
    sum_t alpha_t = 1, has the same projection on every u_t:
    g . u_1 = g . u_t for all t. The paper's closed form, with
    D = [g_1 - g_t]_{t >= 2} and U = [u_1 - u_t]_{t >= 2},

        alpha_{2:T} = g_1 U^T (D U^T)^-1,   alpha_1 = 1 - sum_{t >= 2} alpha_t.

    Returns sum_t alpha_t g_t; ``last_weights`` holds alpha. The loss part of
    the paper (IMTL-L, learned loss scales) is the weighting ``IMTLLossScaling``.

    The same alpha solves, with b_t = alpha_t ||g_t|| and the cosine matrix C,
    the bordered system C b - c 1 = 0, sum_t b_t / ||g_t|| = 1 (c: the common
    projection). Here that (T+1)x(T+1) system is equilibrated and solved in
    float64 by pseudo-inverse (singular values below 1e-6 of the largest
    dropped), which is the paper's alpha whenever D U^T is invertible and a
    finite, documented alpha when it is not (LibMTL inverts D U^T unguarded:
    NaN or an error):
    - a zero gradient has no direction: its alpha is 0, the others as without it
      (all zero: alpha = 0);
    - exactly opposite gradients: the paper's answer, a zero update;
    - duplicated or parallel gradients, or more tasks than dimensions: the
      least-squares solution of least norm in (b, c): identical gradients
      share alpha equally; for g_2 = 2 g_1 (every update along g_1 has equal
      projections) alpha = [1, 0].
    As some gradients approach a configuration where the projections can only
    be equal at infinity (sum_t b_t / ||g_t|| -> 0 on the solution), alpha
    grows without bound, as the paper's formula does.

    Example:
    >>> projection = IMTL()
    >>> projection.combine([[1.0, 0.0], [0.0, 3.0]]).numpy().round(4).tolist()
    [0.75, 0.75]
    >>> projection.last_weights.numpy().round(4).tolist()
    [0.75, 0.25]
    """

    def __init__(self):
        self.last_weights = None

    def coefficients(self, gram, task_losses):
        num_tasks = gram.shape[0]
        gram, finite = float64_gram(gram)
        norms, live, cosines = norms_and_cosines(gram)
        inverse = tf.where(live, 1.0 / tf.where(live, norms, 1.0), 0.0)
        # Constraint row scaled to a largest entry of 1 (the norms may span decades).
        constraint = inverse / tf.maximum(tf.reduce_max(inverse), 1e-300)
        # A zero-gradient task's row pins b_t = 0; it takes no part in the common projection.
        top = cosines + tf.linalg.diag(1.0 - tf.cast(live, tf.float64))
        column = -tf.cast(live, tf.float64)[:, None]
        system = tf.concat(
            [tf.concat([top, column], axis=1), tf.concat([constraint[None, :], tf.zeros([1, 1], tf.float64)], axis=1)], axis=0
        )
        rhs = tf.one_hot(num_tasks, num_tasks + 1, dtype=tf.float64)
        solution = tf.linalg.matvec(tf.linalg.pinv(system, rcond=RCOND), rhs)
        # alpha_t = b_t / ||g_t||, rescaled by the constraint's scaling: sum alpha = constraint . b.
        self.last_weights = where_finite(finite, constraint * solution[:num_tasks])
        return self.last_weights

    def get_config(self):
        return {}
