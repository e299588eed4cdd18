"""GradDrop: keep, element by element, the task gradients that agree with a sampled sign."""

from mtl_keras.backend import register, tf
from mtl_keras.core.draws import StepDraws, check_seed
from mtl_keras.core.task_gradients import replica_sum
from mtl_keras.projection.base import GradientProjection


@register
class GradDrop(GradientProjection):
    """Gradient Sign Dropout (GradDrop).

    Chen et al., "Just Pick a Sign: Optimizing Deep Multitask Models with
    Gradient Sign Dropout", NeurIPS 2020 (Algorithm 1). At the shared
    representation A ([B, ...]), with nabla_t = dL_t/dA:

        S_t = sum over the batch of sign(A) * nabla_t           (the signal, [...])
        P = 1/2 (1 + sum_t S_t / sum_t |S_t|)                   (sign purity, [...])
        M_t = [P > U] [S_t > 0] + [P < U] [S_t < 0],  U ~ U(0, 1) element-wise
        new dL/dA = sum_t (leak_t + (1 - leak_t) M_t) * nabla_t

    which is then backpropagated once into the shared parameters. The signal
    sums over the global batch (replicas add theirs) and U is drawn from
    (``seed``, a saved step counter), so every replica keeps the same
    elements and a resumed run draws what the uninterrupted one would.

    Fast mode only (``projection_mode="fast"``): the masks act on the
    gradients at the shared representation (the outputs of expert stacks or
    ``SharedRepresentation`` layers), as in the paper; paths into shared
    variables around it (an MMoE's gates reading the embeddings the experts
    read) keep the plain sum (``training.gradient_modes.AtRepresentation``).
    Standalone, ``combine`` takes the rows as gradients at one positive activation.

    Args:
        leak: in [0, 1], a float or one per task: the share of a task's
            gradient that always passes (1: no dropout, the plain sum).
        seed: an integer, or None for one drawn at construction (saved in the config).
        epsilon: > 0, keeps P defined where every signal is zero (P = 1/2 there).

    Example:
    >>> drop = GradDrop(leak=1.0)
    >>> drop.combine([[1.0, -2.0], [3.0, 1.0]]).numpy().tolist()
    [4.0, -1.0]
    """

    needs = "representation"

    def __init__(self, leak=0.0, seed=None, epsilon=1e-7):
        leaks = list(leak) if isinstance(leak, (list, tuple)) else [leak]
        if not all(0.0 <= value <= 1.0 for value in leaks):
            raise ValueError(f"GradDrop: `leak` must be in [0, 1] (a float or one per task); got {leak!r}.")
        if not epsilon > 0:
            raise ValueError(f"GradDrop: `epsilon` must be > 0; got {epsilon!r}.")
        self.leak = [float(value) for value in leaks] if isinstance(leak, (list, tuple)) else float(leak)
        self.seed = check_seed(seed, "GradDrop")
        self.epsilon = float(epsilon)
        self._draws = StepDraws(self.seed)

    def build(self, num_tasks, task_names=None):
        if isinstance(self.leak, list) and len(self.leak) != num_tasks:
            raise ValueError(f"GradDrop: `leak` has {len(self.leak)} values for {num_tasks} tasks.")
        super().build(num_tasks, task_names)
        self._draws.build(self)

    def masks(self, signals, uniform):
        """(leak + (1 - leak) M) for each task: [T, ...] from the signals [T, ...] and U [...]."""
        purity = 0.5 * (1.0 + tf.reduce_sum(signals, 0) / (tf.reduce_sum(tf.abs(signals), 0) + self.epsilon))
        keep = ((purity > uniform) & (signals > 0)) | ((purity < uniform) & (signals < 0))
        leak = tf.reshape(tf.constant(self.leak, tf.float32), [-1] + [1] * (signals.shape.rank - 1))
        return leak + (1.0 - leak) * tf.cast(keep, tf.float32)

    def combine_representation(self, task_gradients, activations):
        # Task by task: XLA sums a [B, ...] tensor over its rows several times faster than a
        # [T, B, ...] stack over its second axis (an MMoE's expert outputs: 4.9 ms against 24 for
        # the signals and the masked sum), and the slices of the stack are the tape's own tensors.
        gradients = [tf.cast(g, tf.float32) for g in tf.unstack(task_gradients)]
        sign = tf.sign(tf.cast(activations, tf.float32))
        signals = replica_sum(tf.stack([tf.reduce_sum(sign * g, axis=0) for g in gradients]))
        uniform = tf.random.stateless_uniform(tf.shape(signals)[1:], self._draws.next_seed())
        masks = tf.unstack(self.masks(signals, uniform))
        return tf.cast(tf.add_n([m * g for m, g in zip(masks, gradients)]), task_gradients.dtype)

    def combine_with_gram(self, gradients, gram, task_losses=None):
        gradients = tf.cast(gradients, tf.float32)
        ones = tf.ones_like(gradients[:1])
        return self.combine_representation(gradients[:, None], ones)[0]

    def get_config(self):
        return {"leak": self.leak, "seed": self.seed, "epsilon": self.epsilon}
