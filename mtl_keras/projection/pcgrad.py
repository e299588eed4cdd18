"""PCGrad: project away the conflicting part of each task gradient."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection, RandomOrder


@register
class PCGrad(GradientProjection):
    """Projecting Conflicting Gradients.

    Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020. For
    each task i, g_i' = g_i; for every task j in random order, if
    g_i' . g_j < 0 then g_i' -= (g_i' . g_j / ||g_j||^2) g_j (against the
    original g_j). Returns sum_i g_i'.

    The paper's Algorithm 1 visits the other tasks only (j != i), the default.
    The authors' TensorFlow code (and LibMTL, and the common PyTorch port)
    loop over every task, i itself included: once the others have turned g_i'
    against the original g_i, it is projected on g_i too, which removes that
    component. ``project_on_self=True`` does the same; with ``shuffle=False``
    it reproduces the official code, which visits the tasks in their given
    order (its ``tf.random.shuffle`` result is discarded). The two agree
    whenever g_i' . g_i >= 0 at i's turn, e.g. always for two tasks.

    Args:
        shuffle: visit the tasks in a fresh random order each step.
        seed: seeds that order.
        project_on_self: also project g_i' on g_i, as the official code does.

    Example:
    >>> PCGrad(shuffle=False).combine([[1.0, 0.0], [-1.0, 1.0]]).numpy().tolist()
    [0.5, 1.5]
    """

    def __init__(self, shuffle=True, seed=0, project_on_self=False):
        self._order = RandomOrder(shuffle, seed)
        self.project_on_self = bool(project_on_self)

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
                conflict = (dot < 0.0) & (norm2 > 0.0)
                if not self.project_on_self:
                    conflict &= tf.not_equal(j, i)
                step = tf.where(conflict, dot / tf.where(norm2 > 0.0, norm2, 1.0), 0.0)
                row = row - step * tf.one_hot(j, num_tasks)
            total += row
        return total

    def get_config(self):
        return {
            "shuffle": self._order.shuffle,
            "seed": self._order.seed,
            "project_on_self": self.project_on_self,
        }


