"""GradVac: align task gradients towards an EMA of their cosine."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection, RandomOrder


@register
class GradVac(GradientProjection):
    """Gradient Vaccine: align task gradients towards an EMA of their cosine.

    Wang et al., "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models", ICLR 2021.
    phi_ij = cos(g_i', g_j); target phi_hat_ij <- (1 - beta) phi_hat_ij + beta
    phi_ij, starting at 0; when phi_ij < phi_hat_ij,
    g_i' += ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) /
    (||g_j|| sqrt(1 - phi_hat^2)) g_j. One target per task pair over the whole
    shared vector (the paper keeps one per layer).

    Args:
        beta: EMA rate of the targets, in [0, 1].
        shuffle, seed: order of the other tasks, as in PCGrad.

    Example:
    >>> gradvac = GradVac()
    >>> gradvac.combine([[1.0, 0.0], [-1.0, 1.0]]).numpy().tolist()  # targets 0: PCGrad's step
    [0.5, 1.5]
    """

    def __init__(self, beta=0.01, shuffle=True, seed=0):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"`beta` must be in [0, 1]; got {beta!r}.")
        self.beta = float(beta)
        self._order = RandomOrder(shuffle, seed)

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._order.build(self)
        self.targets = self.add_state("targets", tf.zeros([num_tasks, num_tasks]))

    def coefficients(self, gram, task_losses):
        num_tasks = gram.shape[0]
        eps = 1e-8
        orders = self._order.orders(num_tasks)
        targets = tf.convert_to_tensor(self.targets)
        updates = []
        total = tf.zeros([num_tasks])
        for i in range(num_tasks):
            row = tf.one_hot(i, num_tasks)
            for k in range(num_tasks):
                j = orders[i, k]
                norm_i = tf.sqrt(tf.maximum(tf.tensordot(row, tf.linalg.matvec(gram, row), 1), 0.0))
                norm_j = tf.sqrt(tf.maximum(tf.gather(tf.linalg.diag_part(gram), j), 0.0))
                phi = tf.tensordot(row, tf.gather(gram, j, axis=1), 1) / (norm_i * norm_j + eps)
                target = tf.gather(targets[i], j)
                other = tf.not_equal(j, i)
                weight = (
                    norm_i
                    * (target * tf.sqrt(1.0 - phi**2) - phi * tf.sqrt(1.0 - target**2))
                    / (norm_j * tf.sqrt(1.0 - target**2) + eps)
                )
                row += tf.where(other & (phi < target), weight, 0.0) * tf.one_hot(j, num_tasks)
                new_target = (1.0 - self.beta) * target + self.beta * phi
                updates.append((i, j, tf.where(other, new_target, target)))
            total += row
        indices = tf.stack([tf.stack([i, j]) for i, j, _ in updates])
        self.targets.assign(tf.tensor_scatter_nd_update(targets, indices, [u for _, _, u in updates]))
        return total

    def get_config(self):
        return {"beta": self.beta, "shuffle": self._order.shuffle, "seed": self._order.seed}
