"""DB-MTL: log losses, and every task's running gradient scaled to the largest norm."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection


@register
class DBMTL(GradientProjection):
    """Dual-Balancing Multi-Task Learning (DB-MTL).

    Lin et al., "Dual-Balancing for Multi-Task Learning", 2023. Loss-scale
    balancing: each task trains on log L_t, whose gradient is g_t / L_t.
    Gradient-magnitude balancing: a running average of each task's log-loss
    gradient, at step k (from 1)

        beta_k = beta / k^beta_sigma,
        m_t <- beta_k m_t + (1 - beta_k) g_t / (L_t + eps),  m_t = 0 before step 1,
        g^_t = m_t / (1 - prod_{i <= k} beta_i)   (bias correction),

    then every task scaled to the largest norm:
    alpha_t = max_s ||g^_s|| / (||g^_t|| + eps) and the update is sum_t alpha_t g^_t.

    LibMTL's DB_MTL has no bias correction, so its first step is (1 - beta)
    times this one's (0.1x with beta = 0.9); ``bias_correction=False``
    reproduces it. Exact mode only: the running averages are over the
    parameter gradients ([T, P] floats of training state, 4 T P bytes, saved
    and restored with the model). Use it with equal task weights: the rows it
    receives are the weighted tasks' gradients. ``last_weights`` holds alpha.
    A zero gradient stays zero; zero losses are clamped to ``eps``.

    Args:
        beta: the averaging rate in [0, 1) (0.9 as LibMTL; 0 uses the step's gradients alone).
        beta_sigma: >= 0, the decay of beta with the step (0: constant).
        bias_correction: divide the average by 1 - prod beta_i, as Adam does.
        epsilon: > 0, added to the losses and the norms.

    Example:
    >>> db = DBMTL(beta=0.0)
    >>> db.combine([[2.0, 0.0], [0.0, 1.0]], task_losses=[1.0, 1.0]).numpy().tolist()
    [2.0, 2.0]
    """

    needs = "gradients"

    def __init__(self, beta=0.9, beta_sigma=0.0, bias_correction=True, epsilon=1e-8):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"DBMTL: `beta` must be in [0, 1); got {beta!r}.")
        self.beta = float(beta)
        if not beta_sigma >= 0:
            raise ValueError(f"DBMTL: `beta_sigma` must be >= 0; got {beta_sigma!r}.")
        if not epsilon > 0:
            raise ValueError(f"DBMTL: `epsilon` must be > 0; got {epsilon!r}.")
        self.beta_sigma = float(beta_sigma)
        self.bias_correction = bool(bias_correction)
        self.epsilon = float(epsilon)
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._average = self.add_state("gradient_average", tf.zeros([num_tasks, self.num_parameters]))
        self._decay = self.add_state("decay_product", tf.constant(1.0))
        self._step = self.add_state("step", tf.constant(0, tf.int64))

    def combine_with_gram(self, gradients, gram, task_losses=None):
        if task_losses is None:
            raise ValueError("DBMTL needs `task_losses` (it balances the gradients of log L_t).")
        self._step.assign_add(1)
        k = tf.cast(tf.convert_to_tensor(self._step), tf.float32)
        beta = self.beta / k**self.beta_sigma
        log_gradients = tf.cast(gradients, tf.float32) / tf.maximum(task_losses, self.epsilon)[:, None]
        average = beta * tf.convert_to_tensor(self._average) + (1.0 - beta) * log_gradients
        decay = tf.convert_to_tensor(self._decay) * beta
        self._average.assign(average)
        self._decay.assign(decay)
        estimate = average / (1.0 - decay) if self.bias_correction else average
        norms = tf.norm(estimate, axis=1)
        alpha = tf.reduce_max(norms) / (norms + self.epsilon)
        self.last_weights = alpha
        return tf.linalg.matvec(estimate, alpha, transpose_a=True)

    def get_config(self):
        return {
            "beta": self.beta,
            "beta_sigma": self.beta_sigma,
            "bias_correction": self.bias_correction,
            "epsilon": self.epsilon,
        }
