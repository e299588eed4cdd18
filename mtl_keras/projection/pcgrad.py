"""PCGrad: project away the conflicting part of each task gradient."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection, RandomOrder


@register
class PCGrad(GradientProjection):
    """Projecting Conflicting Gradients.

    Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020. For
    each task i, g_i' = g_i; for every other task j in random order, if
    g_i' . g_j < 0 then g_i' -= (g_i' . g_j / ||g_j||^2) g_j (against the
    original g_j). Returns sum_i g_i'. The official code never shuffles;
    ``shuffle=False`` reproduces it.

    Args:
        shuffle: visit the other tasks in a fresh random order each step.
        seed: seeds that order.

    Example:
    >>> PCGrad(shuffle=False).combine([[1.0, 0.0], [-1.0, 1.0]]).numpy().tolist()
    [0.5, 1.5]
    """

    def __init__(self, shuffle=True, seed=0):
        self._order = RandomOrder(shuffle, seed)

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._order.build(self)

    def coefficients(self, gram, task_losses):
        num_tasks = gram.shape[0]
        orders = self._order.orders(num_tasks)
        total = tf.zeros([num_tasks])
        for i in range(num_tasks):
            row = tf.one_hot(i, num_tasks)  # g_i' = row . G
            for k in range(num_tasks):
                j = orders[i, k]
                # Gathers, not slices: XLA compiles a slice at a data-dependent index anew for every value.
                dot = tf.tensordot(row, tf.gather(gram, j, axis=1), 1)
                norm2 = tf.gather(tf.linalg.diag_part(gram), j)
                conflict = (dot < 0.0) & tf.not_equal(j, i) & (norm2 > 0.0)
                step = tf.where(conflict, dot / tf.where(norm2 > 0.0, norm2, 1.0), 0.0)
                row = row - step * tf.one_hot(j, num_tasks)
            total += row
        return total

    def get_config(self):
        return {"shuffle": self._order.shuffle, "seed": self._order.seed}


