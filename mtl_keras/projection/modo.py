"""MoDo: multi-objective gradient with double sampling of the weights and a third sample for the update."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.min_norm import project_to_simplex


@register
class MoDo(GradientProjection):
    """Multi-Objective gradient with DOuble sampling (MoDo).

    Chen et al., "Three-Way Trade-Off in Multi-Objective Learning:
    Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023
    (Algorithm 1). Three independent samples of the batch, its thirds
    G1, G2, G3 (the rows i with i mod 3 = s):

        lambda <- Proj_simplex(lambda - gamma (G1 G2^T + rho I) lambda)   (1/T at first)
        update = G3^T lambda.

    lambda is kept across steps (training state). As the paper, the shared
    parameters move along the third sample's gradients only (LibMTL does the
    same for them, and uses the mean of its three batches for the task-specific
    parameters, which here get the whole batch's gradient). Each third runs its
    own forward pass (``training.sub_batches``: batch normalization sees each
    alone, as an independent sample). Under a distribution strategy the
    per-replica batch must be a multiple of 3 for the thirds to be those of
    one device. Exact mode only. ``last_weights`` holds lambda.

    Args:
        gamma: > 0, the step size of lambda (1e-3 as LibMTL).
        rho: >= 0, the regularisation of lambda's problem (0.1 as LibMTL).

    Example:
    >>> modo = MoDo(gamma=0.1, rho=0.0)
    >>> [round(float(v), 3) for v in modo.combine([[1.0, 0.0], [0.0, 2.0]])]  # lambda = (0.575, 0.425)
    [0.575, 0.85]
    """

    needs = "sub_batches"
    num_sub_batches = 3

    def __init__(self, gamma=1e-3, rho=0.1):
        if not gamma > 0:
            raise ValueError(f"MoDo: `gamma` must be > 0; got {gamma!r}.")
        if not rho >= 0:
            raise ValueError(f"MoDo: `rho` must be >= 0; got {rho!r}.")
        self.gamma, self.rho = float(gamma), float(rho)
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._lambda = self.add_state("lambda", tf.fill([num_tasks], 1.0 / num_tasks))

    def combine_sub_batches(self, parts, task_losses):
        first, second, third = (tf.cast(parts[i], tf.float32) for i in range(3))
        weights = self.coefficients_in_one_block(tf.matmul(first, second, transpose_b=True), task_losses)
        return tf.linalg.matvec(third, weights, transpose_a=True)

    def coefficients(self, gram, task_losses):
        """lambda's step from the cross-sample matrix ``gram`` = G1 G2^T."""
        system = gram + self.rho * tf.eye(self.num_tasks)
        weights = tf.convert_to_tensor(self._lambda)
        weights = project_to_simplex(weights - self.gamma * tf.linalg.matvec(system, weights))
        self._lambda.assign(weights)
        self.last_weights = weights
        return weights

    def combine_with_gram(self, gradients, gram, task_losses=None):
        """Standalone: the three samples are the rows given."""
        return self.combine_sub_batches(tf.stack([gradients] * 3), task_losses)

    def get_config(self):
        return {"gamma": self.gamma, "rho": self.rho}
