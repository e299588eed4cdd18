"""MoCo: tracked task gradients and simplex weights updated on their Gram matrix."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.min_norm import project_to_simplex


@register
class MoCo(GradientProjection):
    """Multi-objective gradient with Correction (MoCo).

    Fernando et al., "Mitigating Gradient Bias in Multi-objective Learning: A
    Provably Convergent Approach", ICLR 2023 (Algorithm 1). A tracking
    estimate y_t of each task's gradient corrects the bias of stochastic
    MGDA; at step k (from 1), with beta_k = beta / k^beta_sigma and
    gamma_k = gamma / k^gamma_sigma,

        y_t <- y_t - beta_k (y_t - g_t)                      (y = 0 before step 1)
        lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda)   (lambda = 1/T before)
        update = Y^T lambda.

    As the authors' code, on the raw gradients with a Euclidean projection
    onto the simplex; LibMTL's MoCo normalises the gradients, multiplies them
    by the losses and takes a softmax for lambda instead. Exact mode only: y
    is [T, P] training state over the parameter gradients (4 T P bytes, saved
    and restored with the model). ``last_weights`` holds lambda.

    Args:
        beta, beta_sigma: the tracking rate, in (0, 1], and its decay with the step (>= 0).
        gamma, gamma_sigma: the step size of lambda (> 0) and its decay (>= 0).
        rho: >= 0, the regularisation of lambda's problem.

    Example:
    >>> moco = MoCo(beta=1.0, gamma=0.1)
    >>> [round(float(v), 4) for v in moco.combine([[1.0, 0.0], [0.0, 2.0]])]  # lambda = (0.575, 0.425)
    [0.575, 0.85]
    """

    needs = "gradients"

    def __init__(self, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0):
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"MoCo: `beta` must be in (0, 1]; got {beta!r}.")
        if not gamma > 0:
            raise ValueError(f"MoCo: `gamma` must be > 0; got {gamma!r}.")
        for name, value in (("beta_sigma", beta_sigma), ("gamma_sigma", gamma_sigma), ("rho", rho)):
            if not value >= 0:
                raise ValueError(f"MoCo: `{name}` must be >= 0; got {value!r}.")
        self.beta, self.beta_sigma = float(beta), float(beta_sigma)
        self.gamma, self.gamma_sigma = float(gamma), float(gamma_sigma)
        self.rho = float(rho)
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._tracked = self.add_state("tracked_gradients", tf.zeros([num_tasks, self.num_parameters]))
        self._lambda = self.add_state("lambda", tf.fill([num_tasks], 1.0 / num_tasks))
        self._step = self.add_state("step", tf.constant(0, tf.int64))

    def combine_with_gram(self, gradients, gram, task_losses=None):
        self._step.assign_add(1)
        k = tf.cast(tf.convert_to_tensor(self._step), tf.float32)
        beta = self.beta / k**self.beta_sigma
        gamma = self.gamma / k**self.gamma_sigma
        tracked = tf.convert_to_tensor(self._tracked)
        tracked = tracked - beta * (tracked - tf.cast(gradients, tf.float32))
        weights = tf.convert_to_tensor(self._lambda)
        system = tf.matmul(tracked, tracked, transpose_b=True) + self.rho * tf.eye(self.num_tasks)
        weights = project_to_simplex(weights - gamma * tf.linalg.matvec(system, weights))
        self._tracked.assign(tracked)
        self._lambda.assign(weights)
        self.last_weights = weights
        return tf.linalg.matvec(tracked, weights, transpose_a=True)

    def get_config(self):
        return {
            "beta": self.beta, "beta_sigma": self.beta_sigma,
            "gamma": self.gamma, "gamma_sigma": self.gamma_sigma, "rho": self.rho,
        }
