"""IMTL-L: learnt loss scales that make every task's scaled loss constant."""

from mtl_keras.backend import register, tf
from mtl_keras.weighting.base import TaskWeighting


@register
class IMTLLossScaling(TaskWeighting):
    """IMTL-L, the loss-balance half of Impartial Multi-Task Learning.

    Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021. Each task
    has a learnt log-scale s_t (initialised to 0) and contributes
    e^(s_t) L_t - s_t. The model gets the gradient e^(s_t) grad L_t; s_t gets
    e^(s_t) L_t - 1, whose zero is e^(s_t) = 1 / L_t, so every scaled loss is
    driven towards 1. The logged ``<task>_weight`` is e^(s_t). The scales are
    trained by the model's "default" optimizer, as the paper trains them with
    the network. With IMTL-G (a gradient projection) on top this is LibMTL's
    IMTL.

    Example:
    >>> imtl = IMTLLossScaling()
    >>> imtl.build(["ctr", "cvr"])
    >>> imtl.weights(tf.constant([0.5, 0.2])).numpy().tolist()
    [1.0, 1.0]
    >>> imtl.task_regularization().numpy().tolist()  # -s_t, in regularization()'s sum
    [-0.0, -0.0]
    """

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        self.log_scales = self.add_state("log_scales", tf.zeros([len(task_names)]), trainable=True)

    def weights(self, task_losses):
        return tf.exp(tf.convert_to_tensor(self.log_scales))

    def regularization(self):
        return tf.reduce_sum(self.task_regularization())

    def task_regularization(self):
        return -tf.convert_to_tensor(self.log_scales)
