"""Smooth Tchebycheff scalarisation of the log losses, normalised by a nadir point."""

from mtl_keras.backend import register, tf
from mtl_keras.weighting.base import TaskWeighting, require


@register
class SmoothTchebycheff(TaskWeighting):
    """Smooth Tchebycheff scalarisation (STCH) for multi-task learning.

    Lin et al., "Smooth Tchebycheff Scalarization for Multi-Objective
    Optimization", ICML 2024. After warm-up the loss is
    g = mu log sum_t exp(s_t / mu), s_t = log(L_t / n_t), a smooth maximum of
    the log losses normalised by the nadir vector n (uniform preferences, as
    the authors' multi-task code). Its gradient is sum_t w_t grad L_t with
    w_t = softmax(s / mu)_t / L_t, the logged ``<task>_weight``.

    Warm-up, as the authors' code: for the first ``warmup_epochs`` epochs the
    loss is sum_t log L_t (w_t = 1 / L_t), and n is the mean of each task's
    loss over the last warm-up epoch's steps. With ``warmup_epochs=0`` n = 1.
    The authors' code (and LibMTL) average one epoch more and multiply g by
    T; here the smooth Tchebycheff loss starts right after the warm-up
    epochs, unscaled, as the paper writes it.

    Losses (and n) are clamped to ``max(L, epsilon)`` before the log, so a
    zero or negative loss gives a finite step, never NaN.

    Args:
        mu: the smoothing parameter, > 0 (smaller is closer to the max).
        warmup_epochs: epochs of warm-up, >= 0.
        epsilon: the loss clamp, > 0.

    Example:
    >>> stch = SmoothTchebycheff(mu=0.5, warmup_epochs=0)
    >>> stch.build(["ctr", "cvr"])
    >>> [round(w, 4) for w in stch.weights(tf.constant([1.0, 1.0])).numpy().tolist()]
    [0.5, 0.5]
    """

    def __init__(self, mu=1.0, warmup_epochs=1, epsilon=1e-8):
        require(mu > 0, "SmoothTchebycheff", "mu", "> 0", mu)
        require(int(warmup_epochs) == warmup_epochs and warmup_epochs >= 0, "SmoothTchebycheff",
                "warmup_epochs", "an integer >= 0", warmup_epochs)
        require(epsilon > 0, "SmoothTchebycheff", "epsilon", "> 0", epsilon)
        self.mu = float(mu)
        self.warmup_epochs = int(warmup_epochs)
        self.epsilon = float(epsilon)

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        count = len(task_names)
        self.nadir = self.add_state("nadir", tf.ones([count]))
        self._sums = self.add_state("loss_sums", tf.zeros([count]))
        self._count = self.add_state("count", tf.constant(0.0))
        self._epochs = self.add_state("epochs", tf.constant(0, tf.int64))

    def _warming_up(self):
        return tf.convert_to_tensor(self._epochs) < self.warmup_epochs

    def weights(self, task_losses):
        losses = tf.maximum(tf.stop_gradient(task_losses), self.epsilon)
        normalised = tf.math.log(losses / tf.convert_to_tensor(self.nadir))
        smooth_max = tf.nn.softmax(normalised / self.mu)
        return tf.where(self._warming_up(), 1.0, smooth_max) / losses

    def update(self, step):
        warming_up = tf.cast(self._warming_up(), tf.float32)
        self._sums.assign_add(warming_up * step.task_losses)
        self._count.assign_add(warming_up)

    def on_epoch_end(self):
        if int(self._epochs.numpy()) < self.warmup_epochs and float(self._count.numpy()) > 0:
            mean = tf.convert_to_tensor(self._sums) / tf.convert_to_tensor(self._count)
            self.nadir.assign(tf.maximum(mean, self.epsilon))
            self._sums.assign(tf.zeros_like(mean))
            self._count.assign(0.0)
        self._epochs.assign_add(1)

    def get_config(self):
        return {"mu": self.mu, "warmup_epochs": self.warmup_epochs, "epsilon": self.epsilon}
