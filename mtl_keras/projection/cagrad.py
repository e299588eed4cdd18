"""CAGrad: the update closest to the mean gradient that lifts the worst task."""

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection


@register
class CAGrad(GradientProjection):
    """Conflict-Averse Gradient descent.

    Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning",
    NeurIPS 2021. g0 = mean gradient; w = argmin over the simplex of
    g_w . g0 + c ||g0|| ||g_w||, g_w = sum_i w_i g_i; the update is
    d = g0 + (c ||g0|| / ||g_w||) g_w, divided by 1 + c^2 as the reference code
    does (``rescale=True``). At c = 0 it is the mean gradient.

    The inner problem is solved as in the authors' code: K scaled by the mean
    gradient norm, w = softmax(z), 20 steps of SGD on z (learning rate 25,
    momentum 0.5), keeping the best z seen. ``last_weights`` holds w.

    Args:
        c: the conflict-aversion radius (>= 0); 0.4 in the paper.
        rescale: divide by 1 + c^2.
        steps, learning_rate, momentum: the inner SGD on z (the reference code's
            20, 25 and 0.5).

    Example:
    >>> [round(float(g), 4) for g in CAGrad(c=0.4).combine([[1.0, 0.0], [-1.0, 1.0]])]
    [0.1724, 0.431]
    """

    def __init__(self, c=0.4, rescale=True, steps=20, learning_rate=25.0, momentum=0.5):
        if c < 0:
            raise ValueError(f"`c` must be >= 0; got {c!r}.")
        self.c = float(c)
        self.rescale = bool(rescale)
        self.steps = int(steps)
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.last_weights = None

    def coefficients(self, gram, task_losses):
        num_tasks = gram.shape[0]
        scale = tf.reduce_mean(tf.sqrt(tf.linalg.diag_part(gram) + 1e-4))
        gram = gram / scale**2
        mean_dots = tf.reduce_mean(gram, axis=1)  # K b with b = 1/T: g_i . g0
        radius = tf.sqrt(tf.reduce_mean(mean_dots) + 1e-4) * self.c  # c ||g0||

        def objective_and_gradient(z):
            w = tf.nn.softmax(z)
            gw_norm = tf.sqrt(tf.tensordot(w, tf.linalg.matvec(gram, w), 1) + 1e-4)
            objective = tf.tensordot(w, mean_dots, 1) + radius * gw_norm
            d_w = mean_dots + radius * tf.linalg.matvec(gram, w) / gw_norm
            d_z = w * (d_w - tf.tensordot(w, d_w, 1))  # through the softmax Jacobian
            return objective, d_z

        z = tf.zeros([num_tasks])
        velocity = tf.zeros([num_tasks])
        best_z, best = z, tf.constant(float("inf"))
        for step in range(self.steps + 1):
            objective, d_z = objective_and_gradient(z)
            improved = objective < best
            best_z = tf.where(improved, z, best_z)
            best = tf.where(improved, objective, best)
            if step < self.steps:
                velocity = d_z if step == 0 else self.momentum * velocity + d_z
                z = z - self.learning_rate * velocity
        w = tf.nn.softmax(best_z)
        gw_norm = tf.sqrt(tf.tensordot(w, tf.linalg.matvec(gram, w), 1) + 1e-4)
        coefficients = 1.0 / num_tasks + w * (radius / (gw_norm + 1e-4))
        self.last_weights = w
        return coefficients / (1.0 + self.c**2) if self.rescale else coefficients

    def get_config(self):
        return {
            "c": self.c,
            "rescale": self.rescale,
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
        }
