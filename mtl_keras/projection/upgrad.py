"""UPGrad: every task gradient projected onto the dual cone of all of them, averaged."""

import itertools

import numpy as np

from mtl_keras.backend import register, tf
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.linalg import float64_gram, where_finite

# Every support of the multipliers is solved: 2^T systems, cheap up to here.
EXACT_MAX_TASKS = 10
# On the equilibrated (unit-diagonal) systems: keeps those of zero or repeated gradients
# solvable, and moves a multiplier by at most ~1e-12 relative where the system is regular.
_RIDGE = 1e-12


def _supports(num_tasks):
    """[2^T, T] float64 0/1 masks of every subset of the tasks, the empty one included."""
    return tf.constant(np.array(list(itertools.product((0.0, 1.0), repeat=num_tasks))), tf.float64)


def dual_cone_weights(gram):
    """[T, T] float64: row i holds w with G^T w the projection of g_i onto {x : G x >= 0}.

    The projection of g_i is g_i + G^T lambda with lambda >= 0 minimising
    1/2 lambda^T K lambda + lambda^T K e_i (the dual of the projection); row i
    is e_i + lambda. That non-negative quadratic program is solved exactly: on
    every support S, K_SS lambda_S = -(K e_i)_S (equilibrated, float64, all
    supports and tasks in one batch), negatives clipped, and the candidate
    with the smallest ||G^T (e_i + lambda)||^2 wins: the optimum is among the
    candidates and every candidate is feasible.
    """
    num_tasks = gram.shape[0]
    masks = _supports(num_tasks)  # [M, T]
    diag = tf.linalg.diag_part(gram)
    d = tf.where(diag > 0, tf.math.rsqrt(tf.where(diag > 0, diag, 1.0)), 1.0)
    scaled = gram * d[:, None] * d[None, :] + _RIDGE * tf.eye(num_tasks, dtype=tf.float64)
    # Off the support the identity row pins lambda_s = 0.
    system = masks[:, :, None] * masks[:, None, :] * scaled + tf.linalg.diag(1.0 - masks)
    rhs = -masks[:, :, None] * (gram * d[:, None])[None]  # [M, s, i]: -(K e_i)_s d_s on the support
    lam = tf.maximum(tf.linalg.solve(system, rhs) * (d[:, None] * masks[:, :, None]), 0.0)
    weights = tf.eye(num_tasks, dtype=tf.float64)[None] + tf.transpose(lam, [0, 2, 1])  # [M, i, s]
    objective = tf.reduce_sum(weights * tf.einsum("st,mit->mis", gram, weights), axis=2)  # [M, i]
    best = tf.argmin(objective, axis=0, output_type=tf.int32)  # [i]
    return tf.gather_nd(weights, tf.stack([best, tf.range(num_tasks)], axis=1))


@register
class UPGrad(GradientProjection):
    """Unconflicting projection of gradients (UPGrad).

    Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024.
    Each task gradient is projected onto the dual cone of the rows of the
    Jacobian G, {x : g_t . x >= 0 for every t}, and the projections are
    averaged:

        d = 1/T sum_i pi(g_i),   pi(g) = argmin_{x : G x >= 0} ||x - g||.

    d conflicts with no task (g_t . d >= 0). With pi(g_i) = G^T (e_i + lambda_i),
    lambda_i >= 0 the solution of a small quadratic program on K = G G^T
    (``dual_cone_weights``), the coefficients are a = 1/T sum_i (e_i + lambda_i);
    ``last_weights`` holds a. The program is solved exactly (every support of
    lambda, float64) for up to 10 tasks; more are refused.

    The reference code (TorchJD, and LibMTL's port) normalises K by its trace,
    adds ``reg_eps * I`` (moving the projection by up to ~1 %) and returns the
    plain mean below an absolute ``norm_eps``; neither happens here.
    Degenerate gradients give a finite result: a zero gradient constrains
    nothing and projects to zero; exactly opposite gradients project to their
    common orthogonal complement (for two: a zero update). The update d is
    unique; where the gradients are dependent the coefficients a are not, and
    one set of them is returned.

    Example:
    >>> projection = UPGrad()
    >>> projection.combine([[1.0, 0.0], [-1.0, 1.0]]).numpy().round(4).tolist()
    [0.25, 0.75]
    >>> projection.last_weights.numpy().round(4).tolist()
    [1.0, 0.75]
    """

    def __init__(self):
        self.last_weights = None

    def build(self, num_tasks, task_names=None):
        if num_tasks > EXACT_MAX_TASKS:
            raise ValueError(
                f"UPGrad solves its projections exactly for at most {EXACT_MAX_TASKS} tasks; got {num_tasks}."
            )
        super().build(num_tasks, task_names)

    def coefficients(self, gram, task_losses):
        gram, finite = float64_gram(gram)
        # The projection is scale-free: bring K to a unit largest diagonal.
        peak = tf.reduce_max(tf.linalg.diag_part(gram))
        gram = gram / tf.where(peak > 0, peak, 1.0)
        self.last_weights = where_finite(finite, tf.reduce_mean(dual_cone_weights(gram), axis=0))
        return self.last_weights

    def get_config(self):
        return {}
