"""Random Gradient Weighting: fresh random weights on the task gradients every step."""

from mtl_keras.backend import register
from mtl_keras.core.draws import SIMPLEX_DISTRIBUTIONS, StepDraws, check_seed, simplex_weights
from mtl_keras.projection.base import GradientProjection


@register
class RandomGradientWeighting(GradientProjection):
    """Random Gradient Weighting (RGW).

    Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test
    for Multi-Task Learning", TMLR 2022. Each step draws lambda on the
    simplex (softmax of N(0, I) by default; see ``RandomLossWeighting`` for
    the other distributions) and the update is sum_t lambda_t g_t. It needs
    the Gram matrix of nothing, so exact and fast modes give the same update.

    The draws are stateless, from (``seed``, a saved step counter): the same
    on every replica, under XLA, and after a resume. ``last_weights`` holds
    lambda.

    Args:
        distribution: "normal", "uniform" or "dirichlet".
        seed: an integer, or None for one drawn at construction (saved in the config).

    Example:
    >>> rgw = RandomGradientWeighting(seed=1)
    >>> combined = rgw.combine([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(combined[0] + combined[1]), 5)
    1.0
    """

    def __init__(self, distribution="normal", seed=None):
        if distribution not in SIMPLEX_DISTRIBUTIONS:
            raise ValueError(
                f"RandomGradientWeighting: `distribution` must be one of {list(SIMPLEX_DISTRIBUTIONS)}; "
                f"got {distribution!r}."
            )
        self.distribution = distribution
        self.seed = check_seed(seed, "RandomGradientWeighting")
        self._draws = StepDraws(self.seed)
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._draws.build(self)

    def coefficients(self, gram, task_losses):
        self.last_weights = simplex_weights(self.distribution, self._draws.next_seed(), gram.shape[0])
        return self.last_weights

    def get_config(self):
        return {"distribution": self.distribution, "seed": self.seed}
