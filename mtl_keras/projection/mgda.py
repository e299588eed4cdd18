"""MGDA-UB: the min-norm point of the convex hull of the task gradients."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection

_NORMALIZATIONS = ("l2", "loss", "loss+", "none")


def _min_norm_from_two(v1v1, v1v2, v2v2):
    """argmin_g ||g v1 + (1 - g) v2||^2 over g in [0, 1], clipped as the reference code does.

    Returns (gamma, squared norm at gamma).
    """
    gamma = tf.where(
        v1v2 >= v1v1,
        0.999,
        tf.where(v1v2 >= v2v2, 0.001, -(v1v2 - v2v2) / tf.maximum(v1v1 + v2v2 - 2.0 * v1v2, 1e-12)),
    )
    cost = tf.where(
        v1v2 >= v1v1, v1v1, tf.where(v1v2 >= v2v2, v2v2, v2v2 + gamma * (v1v2 - v2v2))
    )
    return gamma, cost


def min_norm_weights(gram, max_iterations=250, tolerance=1e-5):
    """Simplex weights w minimising ||sum_i w_i g_i||^2 given K = G G^T.

    Sener & Koltun's solver: the best pair in closed form, then Frank-Wolfe
    steps (each a two-point line search) until the weights change by less than
    ``tolerance`` in L1 or ``max_iterations`` is reached.
    """
    num_tasks = gram.shape[0]
    # Best pair i < j, in closed form.
    diag = tf.linalg.diag_part(gram)
    gamma, cost = _min_norm_from_two(diag[:, None], gram, diag[None, :])
    upper = tf.linalg.band_part(tf.ones([num_tasks, num_tasks]), 0, -1) - tf.eye(num_tasks)
    best = tf.argmin(tf.reshape(tf.where(upper > 0, cost, float("inf")), [-1]), output_type=tf.int32)
    i, j = best // num_tasks, best % num_tasks
    g = tf.gather(tf.reshape(gamma, [-1]), best)
    weights = g * tf.one_hot(i, num_tasks) + (1.0 - g) * tf.one_hot(j, num_tasks)
    if num_tasks < 3:
        return weights

    def step(iteration, weights, done):
        t = tf.argmin(tf.linalg.matvec(gram, weights), output_type=tf.int32)
        v1v1 = tf.tensordot(weights, tf.linalg.matvec(gram, weights), 1)
        # Gathers, not slices: XLA compiles a slice at a data-dependent index anew for every value.
        v1v2 = tf.tensordot(weights, tf.gather(gram, t, axis=1), 1)
        nc, _ = _min_norm_from_two(v1v1, v1v2, tf.gather(tf.linalg.diag_part(gram), t))
        new = nc * weights + (1.0 - nc) * tf.one_hot(t, num_tasks)
        return iteration + 1, new, tf.reduce_sum(tf.abs(new - weights)) < tolerance

    _, weights, _ = tf.while_loop(
        lambda iteration, _, done: (iteration < max_iterations) & tf.logical_not(done),
        step,
        (tf.constant(0), weights, tf.constant(False)),
    )
    return weights


@register
class MGDA(GradientProjection):
    """Multiple-gradient descent as multi-objective optimisation (MGDA-UB).

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018. Normalise each task gradient ("l2": by ||g_i||, "loss": by
    L_i, "loss+": by L_i ||g_i||, "none"), find the min-norm point of their
    convex hull (closed form for two tasks, Frank-Wolfe beyond, at most 250
    iterations, stop at 1e-5), and, as the reference code does, apply the
    weights found to the raw task gradients: returns sum_i w_i g_i.
    ``last_weights`` holds w.

    Args:
        normalization: "loss+" (default), "loss", "l2" or "none".
        max_iterations, tolerance: of the Frank-Wolfe loop.
    """

    def __init__(self, normalization="loss+", max_iterations=250, tolerance=1e-5):
        if normalization not in _NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {_NORMALIZATIONS}; got {normalization!r}.")
        self.normalization = normalization
        self.max_iterations = int(max_iterations)
        self.tolerance = float(tolerance)
        self.last_weights = None

    def coefficients(self, gram, task_losses):
        norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
        if self.normalization in ("loss", "loss+") and task_losses is None:
            raise ValueError(f"MGDA(normalization={self.normalization!r}) needs `task_losses`.")
        scale = {
            "l2": lambda: norms,
            "loss": lambda: task_losses,
            "loss+": lambda: task_losses * norms,
            "none": lambda: tf.ones_like(norms),
        }[self.normalization]()
        scale = tf.where(scale > 0, scale, 1.0)
        normalized = gram / (scale[:, None] * scale[None, :])
        self.last_weights = min_norm_weights(normalized, self.max_iterations, self.tolerance)
        return self.last_weights

    def get_config(self):
        return {
            "normalization": self.normalization,
            "max_iterations": self.max_iterations,
            "tolerance": self.tolerance,
        }
