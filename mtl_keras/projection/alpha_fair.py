"""The alpha-fair weights w > 0 with (K w)_t = w_t^(-1/alpha): FairGrad's equation, Nash-MTL's at alpha = 1.

With p = 1/alpha, the equation is the stationarity condition of the strictly
convex problem

    min_{w > 0}  phi(w) = 1/2 w^T K w - sum_t h(w_t),
    h(w) = log w (p = 1),  h(w) = w^(1-p) / (1-p) (p != 1),

since h'(w) = w^(-p). It is solved by damped Newton steps in float64: the
Hessian K + diag(p w^(-p-1)) is positive definite, the step length is the
largest of 1, 1/2, ..., 2^-39 keeping w > 0 with sufficient decrease of phi
(Armijo, 1/4 of the predicted decrease), all candidates evaluated at once and
the change of phi computed with log1p/expm1 so that it stays accurate to the
last digits. It stops once the scale-free residual
max_t |w_t^p (K w)_t - 1| is below ``tolerance`` or after ``max_iterations``.
Everything is TensorFlow ops with static shapes (a ``tf.while_loop``), so it
runs inside a compiled train step.

Degenerate K:
- a zero gradient (K_tt = 0) cannot satisfy (K w)_t = w_t^-p: its weight is 0
  and the others are solved as if it were absent;
- where 0 lies in the convex hull of the gradients otherwise (exactly opposite
  gradients, say) no direction improves every task and there is no solution:
  the solver then returns the solution for K + 1e-8 diag(K), always finite. The
  weights on the conflicting tasks grow large (~1e4 / ||g|| for alpha = 1) while
  the combined gradient G^T w stays bounded, ~0 along the conflict (to ~1e-3
  ||g||: the float32 rounding of such weights), and still improves the tasks
  that can be improved. The residual cannot get much below 1e-8 there (the
  large weights cancel in K w), so a tolerance below that runs every iteration.
"""

import numpy as np

from mtl_keras.backend import tf
from mtl_keras.projection.linalg import float64_gram, where_finite

RIDGE = 1e-8
_STEPS = 2.0 ** -np.arange(40)
_ARMIJO = 0.25


def check_solver_arguments(max_iterations, tolerance):
    """The Newton solver's limits, validated (NashMTL's and FairGrad's)."""
    if int(max_iterations) != max_iterations or max_iterations < 1:
        raise ValueError(f"`max_iterations` must be an integer >= 1; got {max_iterations!r}.")
    if not tolerance > 0:
        raise ValueError(f"`tolerance` must be > 0; got {tolerance!r}.")
    return int(max_iterations), float(tolerance)


def _h_change(w, x, p):
    """h(w (1 + x)) - h(w), for x > -1, without cancellation."""
    log_ratio = tf.math.log1p(x)
    if p == 1.0:
        return log_ratio
    return w ** (1.0 - p) * tf.math.expm1((1.0 - p) * log_ratio) / (1.0 - p)


def alpha_fair_weights(gram, alpha=1.0, max_iterations=100, tolerance=1e-7):
    """The float32 [T] weights w > 0 with (K w)_t = w_t^(-1/alpha) for the float32 Gram matrix K.

    Returns (weights, residual): the residual max_t |w_t^(1/alpha) (K w)_t - 1|
    reached (float64, on the problem solved: zero-gradient tasks excluded,
    the 1e-8 ridge included). NaN weights when K is not finite.
    """
    p = 1.0 / float(alpha)
    num_tasks = gram.shape[0]
    gram, finite = float64_gram(gram)
    diag = tf.linalg.diag_part(gram)
    live = diag > 0
    both = tf.logical_and(live[:, None], live[None, :])
    eye = tf.eye(num_tasks, dtype=tf.float64)
    # A zero-gradient task solves 1 * w = w^-p (w = 1) decoupled from the rest; it is zeroed below.
    gram = tf.where(both, gram, eye) + RIDGE * tf.linalg.diag(tf.where(live, diag, 0.0))
    steps = tf.constant(_STEPS, tf.float64)

    def residual(w):
        return tf.reduce_max(tf.abs(w**p * tf.linalg.matvec(gram, w) - 1.0))

    def newton(iteration, w, _):
        kw = tf.linalg.matvec(gram, w)
        grad = kw - w ** (-p)
        hessian = gram + tf.linalg.diag(p * w ** (-p - 1.0))
        # Jacobi scaling: the Hessian's diagonal spans the tasks' gradient scales.
        scale = tf.math.rsqrt(tf.linalg.diag_part(hessian))
        scaled = hessian * scale[:, None] * scale[None, :]
        step = -scale * tf.linalg.solve(scaled, (scale * grad)[:, None])[:, 0]
        slope = tf.tensordot(grad, step, 1)
        ratio = steps[:, None] * (step / w)[None, :]  # [candidates, T]
        feasible = tf.reduce_all(ratio > -1.0, axis=1)
        change = (
            steps * tf.tensordot(kw, step, 1)
            + 0.5 * steps**2 * tf.tensordot(step, tf.linalg.matvec(gram, step), 1)
            - tf.reduce_sum(_h_change(w[None, :], tf.where(ratio > -1.0, ratio, 0.0), p), axis=1)
        )
        accepted = feasible & (change <= _ARMIJO * steps * slope)
        first = tf.argmax(tf.cast(accepted, tf.int32), output_type=tf.int32)
        length = tf.where(tf.reduce_any(accepted), tf.gather(steps, first), 0.0)
        w = w + length * step
        return iteration + 1, w, residual(w)

    # The solution when the gradients are orthogonal: a scale-aware start.
    w0 = tf.linalg.diag_part(gram) ** (-1.0 / (1.0 + p))
    _, w, reached = tf.while_loop(
        lambda iteration, w, reached: (iteration < max_iterations) & (reached >= tolerance),
        newton,
        (tf.constant(0), w0, residual(w0)),
    )
    return where_finite(finite, tf.where(live, w, 0.0)), reached
