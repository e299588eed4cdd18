"""FairGrad: alpha-fair allocation of the update among the tasks."""

from mtl_keras.backend import register
from mtl_keras.projection.alpha_fair import alpha_fair_weights, check_solver_arguments
from mtl_keras.projection.base import GradientProjection


@register
class FairGrad(GradientProjection):
    """FairGrad: the update that maximises the tasks' alpha-fair utility.

    Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024.
    With K = G G^T, the update d = sum_t w_t g_t has weights w > 0 solving

        (K w)_t = w_t^(-1/alpha)   for every task t,

    i.e. each task's rate of improvement g_t . d is w_t^(-1/alpha). alpha = 1
    is proportional fairness (Nash-MTL's equation); larger alpha moves towards
    max-min fairness. Returns sum_t w_t g_t; ``last_weights`` holds w.

    The reference code (and LibMTL) solve the equation with
    ``scipy.optimize.least_squares`` from w = 1/T on the raw K, which stops
    short of the solution when the gradient norms are far from 1. Here it is
    solved inside the step by damped Newton on the equivalent convex problem
    (``alpha_fair``: float64, scale-aware start), to max_t |w_t^(1/alpha)
    (K w)_t - 1| < ``tolerance``. Degenerate gradients give a finite result: a
    zero gradient gets weight 0; where no direction improves every task
    (exactly opposite gradients, say) the equation has no solution and the
    weights are those of K + 1e-8 diag(K): large (they grow as
    1e-8^(-alpha / (alpha + 1))) on the conflicting tasks, with a combined
    gradient ~0 along the conflict (to ~1e-3 ||g||, float32 rounding).

    Args:
        alpha: the fairness parameter, > 0 (1.0, as in LibMTL).
        max_iterations: Newton steps at most (>= 1).
        tolerance: stop once the residual above is below it (> 0).

    Example:
    >>> projection = FairGrad(alpha=1.0)
    >>> projection.combine([[1.0, 0.0], [0.0, 4.0]]).numpy().round(4).tolist()
    [1.0, 1.0]
    >>> projection.last_weights.numpy().round(4).tolist()
    [1.0, 0.25]
    """

    def __init__(self, alpha=1.0, max_iterations=100, tolerance=1e-7):
        if not alpha > 0:
            raise ValueError(f"`alpha` must be > 0; got {alpha!r}.")
        self.alpha = float(alpha)
        self.max_iterations, self.tolerance = check_solver_arguments(max_iterations, tolerance)
        self.last_weights = None

    def coefficients(self, gram, task_losses):
        self.last_weights, _ = alpha_fair_weights(gram, self.alpha, self.max_iterations, self.tolerance)
        return self.last_weights

    def get_config(self):
        return {"alpha": self.alpha, "max_iterations": self.max_iterations, "tolerance": self.tolerance}
