"""PE-LTR: Pareto-efficient task weights with priority lower bounds."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection


def project_to_simplex(v, radius=1.0):
    """argmin_x ||x - v|| s.t. x >= 0, sum x = radius (sort-based, Duchi et al. 2008)."""
    n = v.shape[0]
    u = tf.sort(v, direction="DESCENDING")
    cumulative = tf.cumsum(u) - radius
    index = tf.range(1, n + 1, dtype=v.dtype)
    support = tf.cast(u - cumulative / index > 0, tf.int32)
    rho = tf.reduce_max(support * tf.range(1, n + 1))
    theta = tf.gather(cumulative, rho - 1) / tf.cast(rho, v.dtype)
    return tf.maximum(v - theta, 0.0)


@register
class ParetoEfficient(GradientProjection):
    """PE-LTR weights: Pareto-efficient, each task above its priority bound.

    Lin et al., "A Pareto-Efficient Algorithm for Multiple Objective
    Optimization in E-Commerce Recommendation", RecSys 2019. With K = G G^T and
    bounds c (sum c < 1): solve the relaxed KKT system
    M = [[K, e], [e^T, 0]], rhs = [-K c; 1 - sum c] by least squares,
    w_hat = pinv(M^T M) M^T rhs; project w_hat[:T] onto
    {x >= 0, sum x = 1 - sum c}; w = x + c. Returns sum_i w_i g_i;
    ``last_weights`` holds w (w >= c, sum w = 1).

    Args:
        min_weights: the lower bounds c, a dict by task (resolved when the
            model compiles) or a list in task order; tasks not named get 0.
    """

    def __init__(self, min_weights=None):
        min_weights = min_weights if min_weights is not None else {}
        values = min_weights.values() if isinstance(min_weights, dict) else min_weights
        values = [float(v) for v in values]
        if any(v < 0 for v in values) or sum(values) >= 1.0:
            raise ValueError(
                f"`min_weights` must be >= 0 and sum to < 1; got {min_weights!r} (sum {sum(values)})."
            )
        self.min_weights = min_weights
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        if isinstance(self.min_weights, dict):
            if self.min_weights and task_names is None:
                raise ValueError(
                    "`min_weights` given by task needs the task names: pass a list in task "
                    "order to use ParetoEfficient on its own."
                )
            unknown = sorted(set(self.min_weights) - set(task_names or ()))
            if unknown:
                raise ValueError(
                    f"`min_weights` names unknown task(s) {unknown}; expected tasks among {list(task_names)}."
                )
            bounds = [self.min_weights.get(t, 0.0) for t in (task_names or [None] * num_tasks)]
        else:
            bounds = list(self.min_weights) or [0.0] * num_tasks
            if len(bounds) != num_tasks:
                raise ValueError(f"`min_weights` has {len(bounds)} entries; expected {num_tasks}.")
        self._bounds = tf.constant(bounds, tf.float32)

    def coefficients(self, gram, task_losses):
        num_tasks = gram.shape[0]
        c = self._bounds
        ones = tf.ones([num_tasks, 1])
        m = tf.concat(
            [tf.concat([gram, ones], axis=1), tf.concat([tf.transpose(ones), tf.zeros([1, 1])], axis=1)],
            axis=0,
        )
        rhs = tf.concat([-tf.linalg.matvec(gram, c), [1.0 - tf.reduce_sum(c)]], axis=0)
        mtm = tf.matmul(m, m, transpose_a=True)
        w_hat = tf.linalg.matvec(tf.linalg.pinv(mtm), tf.linalg.matvec(m, rhs, transpose_a=True))
        weights = project_to_simplex(w_hat[:num_tasks], 1.0 - tf.reduce_sum(c)) + c
        self.last_weights = weights
        return weights

    def get_config(self):
        return {"min_weights": self.min_weights}
