"""Nash-MTL: the Nash bargaining solution among the tasks."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.alpha_fair import alpha_fair_weights, check_solver_arguments
from mtl_keras.projection.base import GradientProjection


@register
class NashMTL(GradientProjection):
    """Nash-MTL: the update the tasks agree on as a Nash bargaining solution.

    Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022. With
    K = G G^T, the update d = sum_t alpha_t g_t maximises sum_t log(g_t . d)
    in a ball; its weights alpha > 0 solve

        (K alpha)_t = 1 / alpha_t   for every task t,

    so that g_t . d = 1 / alpha_t and ||d||^2 = T. Returns sum_t c alpha_t g_t,
    where c = min(1, max_norm / ||d||) clips the combined shared gradient as the
    reference code does (``max_norm=0``: no clipping; the norm is the one K
    measures: of the shared parameters' gradient in exact mode, of the shared
    representation's in fast mode). ``last_weights`` holds alpha (unclipped).
    alpha is recomputed every ``update_weights_every`` steps and kept in
    between; it and the step count are training state, saved with the model.

    The reference code (and LibMTL) approach alpha by at most 20 convex
    approximations solved with cvxpy, and when one fails silently keep the
    previous alpha (on the first step, all ones). Here alpha is the solution
    of the equation above to a tolerance, by damped Newton inside the step
    (``alpha_fair`` with alpha-fairness 1: float64, stop once
    max_t |alpha_t (K alpha)_t - 1| < ``tolerance``). Degenerate gradients: a
    zero gradient gets weight 0; where no direction improves every task
    (exactly opposite gradients, say) the equation has no solution, and alpha
    solves it for K + 1e-8 diag(K): finite, ~1e4 / ||g_t|| on the conflicting
    tasks, with a combined gradient ~0 along the conflict (to ~1e-3 ||g||,
    float32 rounding).

    Args:
        update_weights_every: recompute alpha every this many steps (>= 1).
        max_norm: clip the combined gradient to this norm (>= 0; 0: never);
            1.0 as in the reference code.
        max_iterations: Newton steps at most (>= 1).
        tolerance: of the residual above (> 0); Newton converges quadratically,
            so the residual reached is usually far below it.

    Example:
    >>> projection = NashMTL(max_norm=0.0)
    >>> projection.combine([[1.0, 0.0], [0.0, 2.0]]).numpy().round(4).tolist()
    [1.0, 1.0]
    >>> projection.last_weights.numpy().round(4).tolist()
    [1.0, 0.5]
    """

    def __init__(self, update_weights_every=1, max_norm=1.0, max_iterations=100, tolerance=1e-7):
        if int(update_weights_every) != update_weights_every or update_weights_every < 1:
            raise ValueError(f"`update_weights_every` must be an integer >= 1; got {update_weights_every!r}.")
        if not max_norm >= 0:
            raise ValueError(f"`max_norm` must be >= 0 (0: no clipping); got {max_norm!r}.")
        self.update_weights_every = int(update_weights_every)
        self.max_norm = float(max_norm)
        self.max_iterations, self.tolerance = check_solver_arguments(max_iterations, tolerance)
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self.weights = self.add_state("weights", tf.zeros([num_tasks]))
        self.step = self.add_state("step", tf.constant(0, tf.int64))

    def coefficients(self, gram, task_losses):
        step = tf.convert_to_tensor(self.step)
        solved, _ = alpha_fair_weights(gram, 1.0, self.max_iterations, self.tolerance)
        refresh = tf.equal(step % self.update_weights_every, 0)
        previous = tf.convert_to_tensor(self.weights)
        alpha = tf.where(refresh, solved, previous)
        # A non-finite step (NaN weights) is skipped by the trainer: keep the last good alpha.
        self.weights.assign(tf.where(tf.reduce_all(tf.math.is_finite(alpha)), alpha, previous))
        self.step.assign_add(1)
        self.last_weights = alpha
        if self.max_norm == 0:
            return alpha
        norm = tf.sqrt(tf.maximum(tf.tensordot(alpha, tf.linalg.matvec(gram, alpha), 1), 0.0))
        return alpha * tf.minimum(1.0, self.max_norm / tf.where(norm > 0, norm, 1.0))

    def get_config(self):
        return {
            "update_weights_every": self.update_weights_every,
            "max_norm": self.max_norm,
            "max_iterations": self.max_iterations,
            "tolerance": self.tolerance,
        }
