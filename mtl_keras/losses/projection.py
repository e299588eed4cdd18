"""Gradient projections on the shared parameters: the interface, PCGrad and GradVac.

Every method returns a linear combination sum_k a_k g_k of the task gradients
whose coefficients depend only on the Gram matrix K = G G^T ([T, T]) and the
losses. So each one computes K once, works out a ([T], tiny), and the base
class produces a^T G: one pass over the [T, P] gradients either side of the
method's own logic.
"""

from mtl_keras.backend import state_variable, tf


def gram_matrix(gradients):
    """K = G G^T for the [T, P] task gradients."""
    return tf.matmul(gradients, gradients, transpose_b=True)


class GradientProjection:
    """Base class: ``combine(task_gradients [T, P], task_losses=None) -> [P]``.

    Subclasses implement ``coefficients(gram, task_losses) -> [T]``; those that
    keep state across steps create it in ``build(num_tasks)``.
    """

    def build(self, num_tasks, task_names=None):
        self.num_tasks = num_tasks
        self.task_names = list(task_names) if task_names is not None else None
        self.built = True

    def combine(self, task_gradients, task_losses=None):
        gradients = tf.convert_to_tensor(task_gradients, tf.float32)
        if gradients.shape.rank != 2 or gradients.shape[0] is None:
            raise ValueError(
                f"`task_gradients` must be a [T, P] tensor with a known T; got shape {gradients.shape}."
            )
        if not getattr(self, "built", False):
            self.build(gradients.shape[0])
        elif gradients.shape[0] != self.num_tasks:
            raise ValueError(
                f"`task_gradients` has {gradients.shape[0]} rows; this projection was built "
                f"for {self.num_tasks} tasks."
            )
        if task_losses is not None:
            task_losses = tf.reshape(tf.convert_to_tensor(task_losses, tf.float32), [-1])
        return self.combine_with_gram(gradients, gram_matrix(gradients), task_losses)

    def combine_with_gram(self, gradients, gram, task_losses=None):
        """``combine`` for a caller that already has K = G G^T (the train step logs cosines from it)."""
        coefficients = self.coefficients(gram, task_losses)
        return tf.linalg.matvec(gradients, coefficients, transpose_a=True)

    def coefficients(self, gram, task_losses):
        raise NotImplementedError

    def get_config(self):
        return {}


class _RandomOrder:
    """A fresh random order of the other tasks for each task, every step.

    Stateless sampling from (seed, step) so it works under tf.function and XLA
    and is the same on every replica.
    """

    def __init__(self, shuffle, seed):
        self.shuffle = bool(shuffle)
        self.seed = int(seed)

    def build(self):
        if self.shuffle:
            self._step = state_variable(tf.constant(0, tf.int64), "projection_step")

    def orders(self, num_tasks):
        """[T, T] int32: row i is a permutation of 0..T-1 (i itself is skipped by the caller)."""
        if not self.shuffle:
            return tf.tile(tf.range(num_tasks)[None], [num_tasks, 1])
        step = tf.convert_to_tensor(self._step)
        self._step.assign_add(1)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        noise = tf.random.stateless_uniform([num_tasks, num_tasks], seed=seed)
        return tf.argsort(noise, axis=1)


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
        self._order = _RandomOrder(shuffle, seed)

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._order.build()

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
    """

    def __init__(self, beta=0.01, shuffle=True, seed=0):
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"`beta` must be in [0, 1]; got {beta!r}.")
        self.beta = float(beta)
        self._order = _RandomOrder(shuffle, seed)

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self._order.build()
        self.targets = state_variable(tf.zeros([num_tasks, num_tasks]), "gradvac_targets")

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
