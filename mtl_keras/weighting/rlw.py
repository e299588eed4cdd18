"""Random Loss Weighting: fresh random task weights every step."""

from mtl_keras.backend import register
from mtl_keras.core.draws import SIMPLEX_DISTRIBUTIONS, StepDraws, check_seed, simplex_weights
from mtl_keras.weighting.base import TaskWeighting, require


@register
class RandomLossWeighting(TaskWeighting):
    """Random Loss Weighting (RLW): weights drawn anew at every training step.

    Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test
    for Multi-Task Learning", TMLR 2022. Each step draws lambda~ from a
    distribution and maps it onto the simplex: lambda = softmax(lambda~) for
    lambda~ ~ N(0, I) ("normal", the paper's default) or U(0, 1)^T
    ("uniform"); "dirichlet" draws lambda ~ Dir(1, ..., 1) directly (as
    normalised Exp(1) samples). The weights sum to 1, as in the paper (equal
    weights sum to T here).

    The draws are stateless, from (``seed``, the weighting's own step
    counter), so they are the same on every replica, under XLA, and after a
    resume from a checkpoint or a `.keras` file (the counter is saved state).
    Evaluation reads the counter without moving it.

    Args:
        distribution: "normal", "uniform" or "dirichlet".
        seed: an integer seed; None draws one at construction (it is part of
            the config, so a saved model resumes with the same draws).

    Example:
    >>> rlw = RandomLossWeighting(seed=3)
    >>> rlw.build(["ctr", "cvr", "ctcvr"])
    >>> w = rlw.weights(tf.constant([0.5, 0.2, 0.1]))
    >>> round(float(tf.reduce_sum(w)), 5)
    1.0
    """

    def __init__(self, distribution="normal", seed=None):
        require(distribution in SIMPLEX_DISTRIBUTIONS, "RandomLossWeighting", "distribution",
                f"one of {list(SIMPLEX_DISTRIBUTIONS)}", distribution)
        self.distribution = distribution
        self.seed = check_seed(seed, "RandomLossWeighting")
        self._draws = StepDraws(self.seed)

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        self._draws.build(self)

    def weights(self, task_losses):
        # Evaluation reads the weights too: the draw moves on in ``update``, once a training step.
        return simplex_weights(self.distribution, self._draws.current_seed(), len(self.task_names))

    def update(self, step):
        self._draws.advance()

    def get_config(self):
        return {"distribution": self.distribution, "seed": self.seed}
