"""SDMGrad: stochastic direction-oriented MGDA with double sampling."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.min_norm import project_to_simplex


@register
class SDMGrad(GradientProjection):
    """Stochastic Direction-oriented Multi-objective Gradient descent (SDMGrad).

    Xiao et al., "Direction-oriented Multi-objective Learning: Simple and
    Provable Stochastic Algorithms", NeurIPS 2023. The weights solve
    min_{w in simplex} 1/2 ||G w + lambda g0||^2 (g0 the mean task gradient:
    the direction-oriented regularisation) by projected gradient steps whose
    gradient G^T (G w + lambda g0) is estimated without bias from two
    independent samples, the batch's two halves G1, G2 (double sampling):

        K = G1 G2^T / s^2,  s = mean_t sqrt(max(K_tt, 0))      (scale-free step; s = 1 if 0)
        repeat niter times: w <- Proj_simplex(w - w_lr (K w + lambda K 1/T))
        update = (G w + lambda g0) / (1 + lambda),  G = (G1 + G2) / 2.

    w is kept across steps (training state, 1/T at first), as in the authors'
    code, which also divides K by s^2 (plus 1e-8, so K explodes when s = 0). The paper draws a third sample for the
    update; here it is the batch's gradient (the mean of the halves), so no
    rows go unused. The halves are the rows i with i mod 2 = s, each with its
    own forward pass (``training.sub_batches``: a layer that reads across rows,
    batch normalization, sees each half alone, as an independent sample); under
    a distribution strategy the per-replica batch must be even for the halves
    to be those of one device. Exact mode only. ``last_weights`` holds w.

    Args:
        lamda: >= 0, the weight of the mean gradient (0.3 as LibMTL); the
            spelling of the paper's code (``lambda`` is Python's).
        niter: >= 1, projected-gradient steps on w per training step.
        w_lr: > 0, their step size.

    Example:
    >>> sdm = SDMGrad(lamda=0.0, niter=50)
    >>> [round(float(v), 3) for v in sdm.combine([[1.0, 0.0], [0.0, 1.0]])]  # both halves these rows
    [0.5, 0.5]
    """

    needs = "sub_batches"
    num_sub_batches = 2

    def __init__(self, lamda=0.3, niter=20, w_lr=5.0):
        if not lamda >= 0:
            raise ValueError(f"SDMGrad: `lamda` must be >= 0; got {lamda!r}.")
        if isinstance(niter, bool) or not isinstance(niter, int) or niter < 1:
            raise ValueError(f"SDMGrad: `niter` must be an integer >= 1; got {niter!r}.")
        if not w_lr > 0:
            raise ValueError(f"SDMGrad: `w_lr` must be > 0; got {w_lr!r}.")
        self.lamda, self.niter, self.w_lr = float(lamda), niter, float(w_lr)
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._weights = self.add_state("weights", tf.fill([num_tasks], 1.0 / num_tasks))

    def combine_sub_batches(self, parts, task_losses):
        first, second = tf.cast(parts[0], tf.float32), tf.cast(parts[1], tf.float32)
        coefficients = self.coefficients_in_one_block(tf.matmul(first, second, transpose_b=True), task_losses)
        return tf.linalg.matvec((first + second) / 2.0, coefficients, transpose_a=True)

    def coefficients(self, gram, task_losses):
        """The update's coefficients on G from the cross-sample matrix ``gram`` = G1 G2^T."""
        scale = tf.reduce_mean(tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0)))
        cross = gram / tf.where(scale > 0, scale**2, 1.0)
        toward_mean = self.lamda * tf.reduce_mean(cross, axis=1)
        weights = tf.convert_to_tensor(self._weights)
        for _ in range(self.niter):
            weights = project_to_simplex(weights - self.w_lr * (tf.linalg.matvec(cross, weights) + toward_mean))
        self._weights.assign(weights)
        self.last_weights = weights
        return (weights + self.lamda / self.num_tasks) / (1.0 + self.lamda)

    def combine_with_gram(self, gradients, gram, task_losses=None):
        """Standalone: both samples are the rows given."""
        return self.combine_sub_batches(tf.stack([gradients, gradients]), task_losses)

    def get_config(self):
        return {"lamda": self.lamda, "niter": self.niter, "w_lr": self.w_lr}
