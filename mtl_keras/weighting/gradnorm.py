"""GradNorm: weights that balance the tasks' gradient norms on the last shared layer."""

from mtl_keras.backend import register, tf
from mtl_keras.core.task_gradients import ZERO, replica_sum, sources
from mtl_keras.weighting.base import TaskWeighting


@register
class GradNorm(TaskWeighting):
    """Gradient normalisation for adaptive loss balancing.

    Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing
    in Deep Multitask Networks", ICML 2018. W = the last shared layer's
    kernel. G_i = ||grad_W (w_i L_i)||, G_bar = mean_i G_i; L~_i = L_i(t) /
    L_i(0), L_i(0) the loss of the first batch with task i's labels;
    r_i = L~_i / mean(L~); L_grad = sum_i |G_i - G_bar r_i^alpha| with
    the target held constant. Only w gets this gradient, applied with its own
    step (``learning_rate``); after each step w is renormalised to sum to T.
    The gradients on W are summed over replicas first, so every replica takes
    the same step.

    Args:
        alpha: the restoring-force strength (1.5 by default).
        learning_rate: step size of the weight update.
        shared_variable: the W to use; by default the last shared kernel
            (rank >= 2) of ``model.shared_variables``.

    Example:
    >>> gradnorm = GradNorm(alpha=1.5, shared_variable=tf.Variable(tf.ones([4, 3])))
    >>> gradnorm.build(["ctr", "cvr"])
    >>> gradnorm.weights(tf.constant([0.3, 0.2])).numpy().tolist()  # w_i(0) = 1, then trained
    [1.0, 1.0]
    """

    needs_tape = True

    def __init__(self, alpha=1.5, learning_rate=0.025, shared_variable=None):
        if alpha < 0:
            raise ValueError(f"`alpha` must be >= 0; got {alpha!r}.")
        if not learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0; got {learning_rate!r}.")
        self.alpha = float(alpha)
        self.learning_rate = float(learning_rate)
        self.shared_variable = shared_variable

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        if self.shared_variable is None:
            shared = model.shared_variables if model else []
            kernels = [v for v in shared if "kernel" in v.name] or [v for v in shared if len(v.shape) >= 2]
            if not kernels:
                raise ValueError(
                    "GradNorm needs a shared layer: the model has no shared kernel "
                    "(pass `shared_variable=` to choose one)."
                )
            self.shared_variable = kernels[-1]
        count = len(task_names)
        self.task_weights = self.add_state("weights", tf.ones([count]))
        self.initial_losses = self.add_state("initial_losses", tf.zeros([count]))
        self._started = self.add_state("started", tf.constant(False))

    def weights(self, task_losses):
        return tf.convert_to_tensor(self.task_weights)

    def update(self, step):
        losses = step.task_losses
        started = tf.convert_to_tensor(self._started)
        # A task's L_i(0) is its first labelled batch's: one without its labels has a loss of 0.
        recorded = tf.convert_to_tensor(self.initial_losses)
        initial = tf.where(started & (recorded != 0), recorded, losses)
        self.initial_losses.assign(initial)
        self._started.assign(True)
        (source,) = sources([self.shared_variable])
        norms = tf.stack(
            [
                tf.norm(replica_sum(step.tape.gradient(loss, source, unconnected_gradients=ZERO)))
                for loss in step.task_loss_shares
            ]
        )
        w = tf.convert_to_tensor(self.task_weights)
        g = w * norms
        ratios = tf.math.divide_no_nan(losses, initial)
        relative = tf.math.divide_no_nan(ratios, tf.reduce_mean(ratios))
        target = tf.reduce_mean(g) * relative**self.alpha
        # d/dw_i of |w_i n_i - target_i| with the target constant.
        w = tf.maximum(w - self.learning_rate * tf.sign(g - target) * norms, 1e-6)
        self.task_weights.assign(w * len(self.task_names) / tf.reduce_sum(w))

    def get_config(self):
        return {"alpha": self.alpha, "learning_rate": self.learning_rate}
