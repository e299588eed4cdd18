"""FAMO: task logits learnt from how fast each task's log-loss falls."""

from mtl_keras.backend import register, tf
from mtl_keras.weighting.base import TaskWeighting, require

OPTIMIZERS = ("adam", "sgd")
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8


@register
class FAMO(TaskWeighting):
    """Fast Adaptive Multitask Optimization: O(1) balancing of the log-loss decrease.

    Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023.
    Task logits xi (initially 0), z = softmax(xi). The model steps along
    d = sum_t w_t grad L_t with w_t = (z_t / L_t) / sum_s (z_s / L_s), the
    gradient of sum_t z_t log L_t normalised by c = 1 / sum_s (z_s / L_s).
    After each step the log-loss decrease delta_t = log L_t(before) -
    log L_t(after) updates the logits along
    g = J_z(xi)^T delta + gamma xi = z * (delta - z . delta) + gamma xi:
    with "adam" (the authors' code and LibMTL: Adam on xi, learning rate
    ``w_lr``, L2 decay ``gamma``, betas 0.9 / 0.999, eps 1e-8) or "sgd"
    (the paper's Algorithm 1: xi -= w_lr g).

    Approximation, stated: the paper measures L(after) with an extra forward
    pass on the same batch after the update. Here L(after) is the next
    step's losses (the next batch at the updated parameters), so a step costs
    what an equal-weights step costs; the logits update at the start of the
    next step, before its weights are taken, so every step's weights follow
    the paper's order. Batch-to-batch noise enters delta; Adam's scaling
    averages it out over steps.

    Losses enter log and 1/L clamped to ``max(L, epsilon)`` (the authors add
    1e-8), so a negative loss gives a finite step, never NaN. A loss of
    exactly 0 is a task without labelled rows in the batch: it gets weight 0
    and no decrease is measured for it (delta_t = 0, its last measured loss
    kept, none before its first), where log epsilon would swing the logits
    and hand it every weight.
    The logged ``<task>_weight`` is w_t (the weights sum to 1).

    Args:
        gamma: the logits' decay (L2) coefficient, >= 0 (0.01 in the
            authors' code).
        w_lr: the logits' learning rate, > 0 (0.025).
        optimizer: "adam" or "sgd".
        epsilon: the loss clamp, > 0.

    Example:
    >>> famo = FAMO()
    >>> famo.build(["ctr", "cvr"])
    >>> [round(w, 4) for w in famo.weights(tf.constant([0.6, 0.2])).numpy().tolist()]
    [0.25, 0.75]
    """

    def __init__(self, gamma=0.01, w_lr=0.025, optimizer="adam", epsilon=1e-8):
        require(gamma >= 0, "FAMO", "gamma", ">= 0", gamma)
        require(w_lr > 0, "FAMO", "w_lr", "> 0", w_lr)
        require(optimizer in OPTIMIZERS, "FAMO", "optimizer", f"one of {list(OPTIMIZERS)}", optimizer)
        require(epsilon > 0, "FAMO", "epsilon", "> 0", epsilon)
        self.gamma = float(gamma)
        self.w_lr = float(w_lr)
        self.optimizer = optimizer
        self.epsilon = float(epsilon)

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        zeros = tf.zeros([len(task_names)])
        self.logits = self.add_state("logits", zeros)
        self._moment = self.add_state("moment", zeros)
        self._second_moment = self.add_state("second_moment", zeros)
        self._updates = self.add_state("updates", tf.constant(0.0))
        self._previous = self.add_state("previous_losses", zeros)
        self._started = self.add_state("started", tf.constant(False))

    def _next_state(self, losses):
        """(logits, moment, second moment, updates) after the update that ``losses`` complete."""
        xi = tf.convert_to_tensor(self.logits)
        z = tf.nn.softmax(xi)
        # Measured now and before (a task's first labelled batch has no decrease yet: previous 0).
        previous = tf.convert_to_tensor(self._previous)
        measured = (losses != 0) & (previous > 0)
        delta = tf.where(measured, tf.math.log(tf.maximum(previous, self.epsilon))
                         - tf.math.log(tf.maximum(losses, self.epsilon)), 0.0)
        gradient = z * (delta - tf.reduce_sum(z * delta)) + self.gamma * xi
        old = [tf.convert_to_tensor(v) for v in (self._moment, self._second_moment, self._updates)]
        moment, second, updates = old
        if self.optimizer == "sgd":
            step = self.w_lr * gradient
        else:
            moment = ADAM_BETA_1 * moment + (1 - ADAM_BETA_1) * gradient
            second = ADAM_BETA_2 * second + (1 - ADAM_BETA_2) * gradient**2
            count = updates + 1.0
            corrected = moment / (1 - ADAM_BETA_1**count)
            step = self.w_lr * corrected / (tf.sqrt(second / (1 - ADAM_BETA_2**count)) + ADAM_EPSILON)
        # The first step has no earlier losses to measure a decrease from.
        started = tf.convert_to_tensor(self._started)
        new = (xi - step, moment, second, updates + 1.0)
        return [tf.where(started, a, b) for a, b in zip(new, [xi] + old)]

    def weights(self, task_losses):
        losses = tf.stop_gradient(task_losses)
        z = tf.nn.softmax(self._next_state(losses)[0])
        scaled = tf.where(losses != 0, z / tf.maximum(losses, self.epsilon), 0.0)
        return tf.math.divide_no_nan(scaled, tf.reduce_sum(scaled))

    def update(self, step):
        for variable, value in zip((self.logits, self._moment, self._second_moment, self._updates),
                                   self._next_state(step.task_losses)):
            variable.assign(value)
        losses, previous = step.task_losses, tf.convert_to_tensor(self._previous)
        self._previous.assign(tf.where(losses != 0, tf.maximum(losses, self.epsilon), previous))
        self._started.assign(True)

    def get_config(self):
        return {"gamma": self.gamma, "w_lr": self.w_lr, "optimizer": self.optimizer, "epsilon": self.epsilon}
