"""Geometric Loss Strategy: the geometric mean of the task losses as the training loss."""

from mtl_keras.backend import register, tf
from mtl_keras.weighting.base import TaskWeighting, require


@register
class GeometricLossWeighting(TaskWeighting):
    """Geometric Loss Strategy (GLS): minimise the geometric mean of the task losses.

    Chennupati et al., "MultiNet++: Multi-Stream Feature Aggregation and
    Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019.
    The loss is G = (prod_t L_t)^(1/T). Its gradient is sum_t w_t grad L_t with
    w_t = dG/dL_t = G / (T L_t), so the step weights each task by w_t (held
    constant in the backward pass) and the weighted sum sum_t w_t L_t equals G:
    the logged ``<task>_weight`` is the weight the gradient really uses
    (LibMTL logs L_t / (T prod L) instead).

    A loss < 0 has no logarithm: each L_t is clamped to ``max(L_t, epsilon)``
    first, so a negative loss (e.g. a regression loss that can be negative)
    gives a large but finite weight, never a NaN step. A loss of exactly 0 is
    a task without labelled rows in the batch (or one with nothing left to
    learn): it is left out, weight 0, and G is the others' geometric mean
    (with it in, G would follow epsilon and the other tasks stop learning).

    Args:
        epsilon: the clamp, > 0.

    Example:
    >>> gls = GeometricLossWeighting()
    >>> gls.build(["ctr", "cvr"])
    >>> [round(w, 4) for w in gls.weights(tf.constant([4.0, 1.0])).numpy().tolist()]
    [0.25, 1.0]
    """

    def __init__(self, epsilon=1e-8):
        require(epsilon > 0, "GeometricLossWeighting", "epsilon", "> 0", epsilon)
        self.epsilon = float(epsilon)

    def weights(self, task_losses):
        measured = tf.stop_gradient(task_losses) != 0
        losses = tf.maximum(tf.stop_gradient(task_losses), self.epsilon)
        count = tf.maximum(tf.reduce_sum(tf.cast(measured, tf.float32)), 1.0)
        geometric_mean = tf.exp(tf.reduce_sum(tf.where(measured, tf.math.log(losses), 0.0)) / count)
        return tf.where(measured, geometric_mean / (count * losses), 0.0)

    def get_config(self):
        return {"epsilon": self.epsilon}
