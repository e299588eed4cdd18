"""PE-LTR: Pareto-efficient task weights with priority lower bounds."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.min_norm import min_norm_weights


@register
class ParetoEfficient(GradientProjection):
    """PE-LTR weights: Pareto-efficient, each task above its priority bound.

    Lin et al., "A Pareto-Efficient Algorithm for Multiple Objective
    Optimization in E-Commerce Recommendation", RecSys 2019. With the task
    gradients g_i and bounds c (c >= 0, sum c < 1), the weights are

        w = argmin_w ||sum_i w_i g_i||^2   s.t.  w >= c, sum_i w_i = 1.

    The paper solves the KKT system of the equality constraint alone,
    M = [[K, e], [e^T, 0]] with K = G G^T, by least squares through
    pinv(M^T M), then projects the result onto {w >= c, sum w = 1}. That is
    the optimum only when the relaxed solution is already feasible, and the
    float32 pseudo-inverse squares the conditioning: at gradient norms of ~8
    its cutoff drops the informative direction and the weights come out
    uniform. Here w is the exact constrained minimiser instead
    (``min_norm.min_norm_weights``: every face's KKT system solved in float64,
    equilibrated), the same point whenever the paper's relaxed step is
    feasible. Returns sum_i w_i g_i; ``last_weights`` holds w (w >= c, sum w = 1).

    Args:
        min_weights: the lower bounds c, a dict by task (resolved when the
            model compiles) or a list in task order; tasks not named get 0.

    Example:
    >>> [round(float(g), 4) for g in ParetoEfficient().combine([[1.0, 0.0], [-1.0, 1.0]])]
    [0.2, 0.4]
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
        self._bounds = tf.constant(bounds, tf.float64)  # exact bounds for the float64 solver

    def coefficients(self, gram, task_losses):
        self.last_weights = min_norm_weights(gram, self._bounds)
        return self.last_weights

    def get_config(self):
        # Plain containers: tf_keras's tracking wraps the attribute, and its SavedModel
        # writes this config as JSON.
        bounds = self.min_weights
        return {"min_weights": dict(bounds) if isinstance(bounds, dict) else list(bounds)}
