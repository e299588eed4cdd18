"""MGDA-UB: the min-norm point of the convex hull of the task gradients."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.min_norm import min_norm_weights

_NORMALIZATIONS = ("l2", "loss", "loss+", "none")


@register
class MGDA(GradientProjection):
    """Multiple-gradient descent as multi-objective optimisation (MGDA-UB).

    Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
    NeurIPS 2018. Normalise each task gradient, g~_i = g_i / s_i with
    s_i = ||g_i|| ("l2"), L_i ("loss"), L_i ||g_i|| ("loss+") or 1 ("none");
    find the min-norm point of their convex hull,

        w = argmin_{w >= 0, sum w = 1} ||sum_i w_i g~_i||^2,

    and, as the reference code does, apply w to the raw task gradients:
    returns sum_i w_i g_i. ``last_weights`` holds w.

    The paper's solver (Frank-Wolfe from the best pair, the pair's weight
    clipped to [0.001, 0.999]) stops early on degenerate sets: a zero
    gradient, near-dependent gradients. Here w is the exact minimiser
    (``min_norm.min_norm_weights``: every face solved in float64) for up to 10
    tasks, the point the Frank-Wolfe iterations converge to.

    Args:
        normalization: "loss+" (default), "loss", "l2" or "none".
        max_iterations, tolerance: of the projected-gradient solver used for
            more than 10 tasks (stop when the weights move by less than
            ``tolerance`` in L1).

    Example:
    >>> mgda = MGDA(normalization="none")
    >>> [round(float(g), 4) for g in mgda.combine([[1.0, 0.0], [-1.0, 1.0]])]  # the min-norm point
    [0.2, 0.4]
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
        # A zero scale (zero gradient or zero loss) leaves that gradient as it is.
        scale = tf.where(scale > 0, scale, 1.0)
        normalized = gram / (scale[:, None] * scale[None, :])
        self.last_weights = min_norm_weights(
            normalized, max_iterations=self.max_iterations, tolerance=self.tolerance
        )
        return self.last_weights

    def get_config(self):
        return {
            "normalization": self.normalization,
            "max_iterations": self.max_iterations,
            "tolerance": self.tolerance,
        }
