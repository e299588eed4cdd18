"""The exact min-norm point of the task gradients' (bounded) convex hull.

Shared by MGDA and ParetoEfficient. Given K = G G^T ([T, T]) and lower
bounds c (c >= 0, sum c < 1), find

    w* = argmin_w ||sum_i w_i g_i||^2 = w^T K w   s.t.  w >= c, sum_i w_i = 1.

Write w = c + x with x >= 0, sum x = r = 1 - sum c. The optimum lies in the
relative interior of one face {x_i = 0 for i not in S}; there it is a
stationary point of the problem with only the equality constraint, i.e. it
solves the KKT system

    K_SS x_S + mu 1 = -(K c)_S,    1^T x_S = r.

So, for T up to ``EXACT_MAX_TASKS``, every support S (2^T - 1 of them, a
static list) is solved at once as one batch of (T+1)x(T+1) systems in
float64, each candidate is made feasible (negatives clipped, rescaled to sum
r) and the feasible candidate with the smallest objective wins. That is exact
up to float64 rounding and needs no tolerance on feasibility. Beyond that,
accelerated projected gradient descent (FISTA) over the simplex converges
instead. Everything is TensorFlow ops with static shapes, so it runs in a
compiled train step (tf.function, XLA, any replica).
"""

import itertools

import numpy as np

from mtl_keras.backend import tf

# 2^10 - 1 = 1023 systems of 11x11: cheap. Past that the count doubles with every task.
EXACT_MAX_TASKS = 10
# Tikhonov term on the equilibrated system (unit diagonal): keeps the systems of faces
# with zero or repeated gradients solvable; it shifts the objective by at most 1e-12 there.
_RIDGE = 1e-12


def project_to_simplex(v, radius=1.0):
    """argmin_x ||x - v|| s.t. x >= 0, sum x = radius (sort-based, Duchi et al. 2008)."""
    n = v.shape[0]
    u = tf.sort(v, direction="DESCENDING")
    cumulative = tf.cumsum(u) - radius
    index = tf.range(1, n + 1, dtype=v.dtype)
    support = tf.cast(u - cumulative / index > 0, tf.int32)
    # At least the largest entry: in float32 a huge v can round every test to false.
    rho = tf.maximum(tf.reduce_max(support * tf.range(1, n + 1)), 1)
    theta = tf.gather(cumulative, rho - 1) / tf.cast(rho, v.dtype)
    return tf.maximum(v - theta, 0.0)


def _supports(num_tasks):
    """[2^T - 1, T] float64 0/1 masks of every non-empty subset of the tasks (built in Python)."""
    masks = [m for m in itertools.product((0.0, 1.0), repeat=num_tasks) if any(m)]
    return tf.constant(np.array(masks), tf.float64)


def _objective(gram, weights):
    """w^T K w for a batch of weight vectors [..., T]."""
    return tf.reduce_sum(weights * tf.linalg.matvec(gram, weights), axis=-1)


def _enumerate_faces(gram, bounds, radius):
    num_tasks = gram.shape[0]
    masks = _supports(num_tasks)  # [M, T]
    linear = tf.linalg.matvec(gram, bounds)  # K c
    # Equilibrate: with d_i = 1 / sqrt(K_ii), D K D has a unit diagonal, so gradients of
    # very different norms keep their relative accuracy through the LU factorisation.
    diag = tf.linalg.diag_part(gram)
    d = tf.where(diag > 0, tf.math.rsqrt(tf.where(diag > 0, diag, 1.0)), 1.0)
    border = d / tf.reduce_max(d)  # the 1 column, scaled with D, kept <= 1 (mu scaled likewise)
    scaled = gram * d[:, None] * d[None, :] + _RIDGE * tf.eye(num_tasks, dtype=tf.float64)
    outer = masks[:, :, None] * masks[:, None, :]
    # Off the support: the identity row pins y_i = 0.
    top = outer * scaled + tf.linalg.diag(1.0 - masks)
    column = (masks * border)[:, :, None]
    system = tf.concat(
        [
            tf.concat([top, column], axis=2),
            tf.concat([tf.transpose(column, [0, 2, 1]), tf.zeros_like(column[:, :1])], axis=2),
        ],
        axis=1,
    )
    rhs = tf.concat(
        [-masks * linear * d, tf.fill([masks.shape[0], 1], radius / tf.reduce_max(d))], axis=1
    )
    y = tf.linalg.solve(system, rhs[:, :, None])[:, :num_tasks, 0]
    x = tf.maximum(y * d * masks, 0.0)
    total = tf.reduce_sum(x, axis=1, keepdims=True)
    # A candidate with nothing positive left is not a point of the set: rank it last.
    feasible = total[:, 0] > 0
    x = x * (radius / tf.where(total > 0, total, 1.0))
    candidates = x + bounds
    objective = tf.where(feasible, _objective(gram, candidates), np.inf)
    return tf.gather(candidates, tf.argmin(objective, output_type=tf.int32))


def _projected_gradient(gram, bounds, radius, max_iterations, tolerance):
    """FISTA on f(x) = (c + x)^T K (c + x) over {x >= 0, sum x = radius}."""
    num_tasks = gram.shape[0]
    # Gershgorin bound on the largest eigenvalue of 2K: a safe Lipschitz constant.
    lipschitz = tf.maximum(2.0 * tf.reduce_max(tf.reduce_sum(tf.abs(gram), axis=1)), 1e-300)
    x0 = tf.fill([num_tasks], radius / num_tasks)

    def step(iteration, x, z, t, done):
        grad = 2.0 * tf.linalg.matvec(gram, z + bounds)
        new = project_to_simplex(z - grad / lipschitz, radius)
        t_new = (1.0 + tf.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z_new = new + ((t - 1.0) / t_new) * (new - x)
        return iteration + 1, new, z_new, t_new, tf.reduce_sum(tf.abs(new - x)) < tolerance

    _, x, _, _, _ = tf.while_loop(
        lambda iteration, x, z, t, done: (iteration < max_iterations) & tf.logical_not(done),
        step,
        (tf.constant(0), x0, x0, tf.constant(1.0, tf.float64), tf.constant(False)),
    )
    return x + bounds


def min_norm_weights(gram, bounds=None, max_iterations=1000, tolerance=1e-10):
    """argmin_w w^T K w s.t. w >= bounds, sum w = 1, for the float32 Gram matrix K [T, T].

    Exact (enumeration over the faces, float64) for T <= ``EXACT_MAX_TASKS``;
    beyond, projected gradient in float64 for at most ``max_iterations``
    steps, stopping once the weights move by less than ``tolerance`` (L1).
    Returns float32 [T]. The problem is invariant to the scale of K, so K is
    divided by its largest diagonal entry first.
    """
    num_tasks = gram.shape[0]
    gram = tf.cast(gram, tf.float64)
    # A non-finite Gram matrix (a NaN or Inf loss) would make the CPU solve raise
    # "not invertible" and end the step before the caller's non-finite check sees it:
    # solve a harmless one and hand back NaN weights instead.
    finite = tf.reduce_all(tf.math.is_finite(gram))
    gram = tf.where(finite, (gram + tf.transpose(gram)) / 2.0, tf.eye(num_tasks, dtype=tf.float64))
    peak = tf.reduce_max(tf.linalg.diag_part(gram))
    gram = gram / tf.where(peak > 0, peak, 1.0)
    bounds = tf.zeros([num_tasks], tf.float64) if bounds is None else tf.cast(bounds, tf.float64)
    radius = 1.0 - tf.reduce_sum(bounds)
    if num_tasks <= EXACT_MAX_TASKS:
        weights = _enumerate_faces(gram, bounds, radius)
    else:
        weights = _projected_gradient(gram, bounds, radius, max_iterations, tolerance)
    return tf.cast(tf.where(finite, weights, np.nan), tf.float32)
