"""ExcessMTL: weights that grow with each task's estimated excess risk."""

import math

from mtl_keras.backend import register, tf
from mtl_keras.core.task_gradients import replica_sum, task_gradient_matrix
from mtl_keras.weighting.base import TaskWeighting, require

# Inside the square root of the accumulated squares, as the authors' code.
DAMPING = 1e-7


@register
class ExcessMTL(TaskWeighting):
    """Robust multi-task learning with excess risks.

    He et al., "Robust Multi-Task Learning with Excess Risks", ICML 2024.
    g_t = task t's gradient of the shared variables (summed over replicas);
    H_t = diag(sqrt(sum over steps of g_t^2 + 1e-7)), an AdaGrad-style
    diagonal curvature; the excess risk estimate is e_t = g_t^T H_t^-1 g_t,
    divided by its value at the first step (as the authors' code, and LibMTL,
    do) so tasks of different scales compare. The weights take an
    exponentiated-gradient (mirror ascent) step, alpha_t <- alpha_t
    exp(eta e_t / e_t(1)), renormalised to sum to T (computed in log space,
    so no weight overflows); the first step only records e_t(1).

    The per-task gradients come from the step's tape (T extra backward passes
    through the shared layers): the weights a step uses are those after the
    previous step's gradients, one step behind the authors' code, which
    weights a step by its own gradients. The accumulated squares, one per task
    and shared parameter, are saved state. A task whose first-step estimate
    is 0 gets no excess (0 / 0 taken as 0).

    Args:
        robust_step_size: eta, > 0.

    Example:
    >>> excess = ExcessMTL()
    >>> w = tf.Variable([[1.0], [2.0]])
    >>> excess.build(["ctr", "cvr"], shared_variables=[w])
    >>> excess.weights(tf.constant([0.5, 0.2])).numpy().tolist()
    [1.0, 1.0]
    """

    needs_tape = True

    def __init__(self, robust_step_size=0.01):
        require(robust_step_size > 0, "ExcessMTL", "robust_step_size", "> 0", robust_step_size)
        self.robust_step_size = float(robust_step_size)

    def build(self, task_names, loss_kinds=None, model=None, shared_variables=None):
        """``shared_variables``: the variables whose per-task gradients estimate the excess
        risks (``model.shared_variables`` by default)."""
        super().build(task_names)
        shared = list(shared_variables if shared_variables is not None else getattr(model, "shared_variables", []))
        if not shared:
            raise ValueError("ExcessMTL needs shared variables: the model has none that two tasks reach.")
        self.shared = shared
        size = sum(math.prod(v.shape) for v in shared)
        count = len(task_names)
        self._squares = self.add_state("gradient_squares", tf.zeros([count, size]))
        self._initial = self.add_state("initial_excess", tf.ones([count]))
        self._log_weights = self.add_state("log_weights", tf.fill([count], -math.log(count)))
        self._started = self.add_state("started", tf.constant(False))

    def weights(self, task_losses):
        return len(self.task_names) * tf.nn.softmax(tf.convert_to_tensor(self._log_weights))

    def update(self, step):
        local = task_gradient_matrix(step.tape, step.task_loss_shares, self.shared)
        gradients = tf.cast(replica_sum(local), tf.float32)
        self.accumulate(gradients)

    def accumulate(self, gradients):
        """One step of the rule from the [T, P] per-task gradients of the shared variables."""
        squares = tf.convert_to_tensor(self._squares) + gradients**2
        self._squares.assign(squares)
        excess = tf.reduce_sum(gradients**2 / tf.sqrt(squares + DAMPING), axis=1)
        started = tf.convert_to_tensor(self._started)
        # A task's first excess is its first labelled batch's: one without its labels has none.
        recorded = tf.convert_to_tensor(self._initial)
        initial = tf.where(started & (recorded != 0), recorded, excess)
        self._initial.assign(initial)
        step = tf.where(started, self.robust_step_size * tf.math.divide_no_nan(excess, initial), 0.0)
        # Normalised in log space: the sum of the weights stays T, their logs bounded.
        self._log_weights.assign(tf.nn.log_softmax(tf.convert_to_tensor(self._log_weights) + step))
        self._started.assign(True)

    def get_config(self):
        return {"robust_step_size": self.robust_step_size}
