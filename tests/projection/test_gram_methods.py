"""IMTL, Nash-MTL, Aligned-MTL, UPGrad and FairGrad against NumPy implementations written from the papers.

The references work on the gradients themselves, in float64, with algorithms
other than the ones in mtl_keras/projection: IMTL by the paper's closed form
(D U^T)^-1; Aligned-MTL from the SVD of G, not the eigendecomposition of K;
UPGrad by projecting each gradient in the primal, over every set of active
constraints; Nash-MTL and FairGrad by cyclic coordinate descent, each
coordinate solved exactly. The gradient sets are dyadic and the scales powers
of two (2^-10 ~ 1e-3, 1, 2^10 ~ 1e3), so the float32 Gram matrix the train
step hands over is exact and the comparison measures the solvers alone.
"""

import itertools

import numpy as np
import pytest

from mtl_keras.backend import tf
from mtl_keras.losses import IMTL, AlignedMTL, FairGrad, NashMTL, UPGrad

SCALES = (2.0**-10, 1.0, 2.0**10)
TOLERANCE = 1e-5
KINDS = ("conflicting", "aligned", "zero", "duplicated", "near_dependent", "badly_scaled")


def gradient_set(kind, num_tasks):
    """[T, 6] float32 rows with entries in multiples of 2^-6: exact float32 dot products."""
    rng = np.random.default_rng(num_tasks)
    g = rng.integers(-8, 9, size=(num_tasks, 6)) / 4.0
    g[:, 0] = np.where(np.arange(num_tasks) % 2, -2.0, 2.5)  # rows alternate along e_0: they conflict
    if kind == "aligned":
        g = np.abs(g)
    elif kind == "zero":
        g[1] = 0.0
    elif kind == "duplicated":
        g[1] = g[0]
    elif kind == "near_dependent":
        other = g[1] if num_tasks > 2 else g[0]
        g[-1] = (g[0] + other) / 2.0 + 2.0**-6 * np.eye(6)[5]
    elif kind == "badly_scaled":
        g *= (2.0 ** np.array([7, 0, -7, 3])[:num_tasks])[:, None]
    return g.astype("float32")


CASES = [(kind, t) for kind in KINDS for t in (2, 3, 4)]


_COMPILED = {}


def run(projection, g):
    """(combined gradient, last_weights). The iterative solvers run compiled, as in the train step,
    one trace per configuration and task count; the others eagerly."""
    if isinstance(projection, (NashMTL, FairGrad)):
        key = (type(projection).__name__, str(projection.get_config()), len(g))
        if key not in _COMPILED:
            projection.build(len(g))
            _COMPILED[key] = tf.function(lambda x, p=projection: (p.combine(x), p.last_weights))
        combined, weights = _COMPILED[key](tf.constant(g))
    else:
        combined, weights = projection.combine(g), projection.last_weights
    return combined.numpy().astype(np.float64), weights.numpy().astype(np.float64)


def vector_error(got, want, g, a):
    """|got - want| relative to sum_t |a_t| ||g_t||, the size of the terms the update sums."""
    return np.linalg.norm(got - want) / max(np.abs(a) @ np.linalg.norm(g, axis=1), 1e-300)


def spread(g, solve, merge_duplicates=True):
    """Weights of ``solve`` on the non-zero rows (identical ones merged, their weight shared equally
    when ``merge_duplicates``); 0 on zero rows."""
    groups = []  # lists of row indices
    for t, row in enumerate(g):
        if row.any():
            match = [group for group in groups if merge_duplicates and np.array_equal(g[group[0]], row)]
            match[0].append(t) if match else groups.append([t])
    inner = solve(g[[group[0] for group in groups]])
    weights = np.zeros(len(g))
    for group, w in zip(groups, inner):
        weights[group] = w / len(group)
    return weights


# --- IMTL-G ----------------------------------------------------------------------------------


def np_imtl(g):
    """The paper's closed form: alpha_{2:T} = g_1 U^T (D U^T)^-1, alpha_1 = 1 - sum."""
    if len(g) == 1:
        return np.ones(1)
    u = g / np.linalg.norm(g, axis=1, keepdims=True)
    d, uu = g[:1] - g[1:], u[:1] - u[1:]
    rest = g[0] @ uu.T @ np.linalg.inv(d @ uu.T)
    return np.concatenate([[1.0 - rest.sum()], rest])


def check_imtl(kind, num_tasks):
    base = gradient_set(kind, num_tasks).astype(np.float64)
    for scale in SCALES:
        g = base * scale
        want = spread(g, np_imtl)
        combined, got = run(IMTL(), g.astype("float32"))
        assert np.abs(got - want).max() <= TOLERANCE * np.abs(want).max(), (kind, num_tasks, scale, got, want)
        assert vector_error(combined, want @ g, g, want) <= TOLERANCE
        live = np.linalg.norm(g, axis=1) > 0
        projections = (g[live] @ combined) / np.linalg.norm(g[live], axis=1)
        assert np.ptp(projections) <= TOLERANCE * np.abs(want) @ np.linalg.norm(g, axis=1)


# --- Aligned-MTL -----------------------------------------------------------------------------


def np_aligned_mtl(g):
    """B = sigma_R V diag(1 / sigma) V^T from the SVD of G (rank cut as the reference code), alpha = B 1."""
    v, s, _ = np.linalg.svd(g, full_matrices=False)
    keep = s**2 > (s**2).max() * len(g) * np.finfo(np.float32).eps
    v, s = v[:, keep], s[keep]
    return (s.min() * v / s) @ v.T @ np.ones(len(g))


def check_aligned_mtl(kind, num_tasks):
    base = gradient_set(kind, num_tasks).astype(np.float64)
    for scale in SCALES:
        g = base * scale
        want = np_aligned_mtl(g)
        combined, got = run(AlignedMTL(), g.astype("float32"))
        assert np.abs(got - want).max() <= TOLERANCE * np.abs(want).max(), (kind, num_tasks, scale, got, want)
        assert vector_error(combined, want @ g, g, want) <= TOLERANCE


# --- UPGrad ----------------------------------------------------------------------------------


def np_dual_cone_projection(g, x):
    """argmin ||y - x|| s.t. G y >= 0, in the primal: x projected on {G_A y = 0} for every active set A."""
    best, scale = None, np.abs(g).max() * np.abs(x).max() + 1e-300
    for size in range(len(g) + 1):
        for active in itertools.combinations(range(len(g)), size):
            ga = g[list(active)]
            y = x - ga.T @ np.linalg.lstsq(ga @ ga.T, ga @ x, rcond=None)[0] if size else x.copy()
            if (g @ y >= -1e-12 * scale).all() and (best is None or np.linalg.norm(y - x) < np.linalg.norm(best - x)):
                best = y
    return best


def np_upgrad(g):
    return np.mean([np_dual_cone_projection(g, row) for row in g], axis=0)


def check_upgrad(kind, num_tasks):
    base = gradient_set(kind, num_tasks).astype(np.float64)
    for scale in SCALES:
        g = base * scale
        want = np_upgrad(g)
        combined, got = run(UPGrad(), g.astype("float32"))
        size = np.linalg.norm(g, axis=1).max()
        assert np.linalg.norm(combined - want) <= TOLERANCE * size, (kind, num_tasks, scale, combined, want)
        # The update conflicts with no task, and is sum_t a_t g_t.
        assert (g @ combined >= -TOLERANCE * size**2).all()
        np.testing.assert_allclose(combined, got @ g, atol=TOLERANCE * size)
        if np.linalg.matrix_rank(g) == len(g):  # only then are the coefficients unique
            want_a = np.linalg.lstsq(g.T, want, rcond=None)[0]
            assert np.abs(got - want_a).max() <= TOLERANCE * np.abs(want_a).max()


# --- Nash-MTL and FairGrad -------------------------------------------------------------------


def np_alpha_fair(g, alpha):
    """w > 0 with (K w)_t = w_t^(-1/alpha) by cyclic coordinate descent, each coordinate's root exact."""
    k, p = g @ g.T, 1.0 / alpha
    w = 1.0 / np.sqrt(np.diag(k))
    for _ in range(20000):
        previous = w.copy()
        for t in range(len(w)):
            rest = k[t] @ w - k[t, t] * w[t]
            if alpha == 1.0:  # K_tt x^2 + rest x - 1 = 0, the positive root, without cancellation
                w[t] = 2.0 / (rest + np.sqrt(rest**2 + 4.0 * k[t, t]))
            else:  # K_tt x + rest - x^-p increases in x: bisection on log x
                lo, hi = -80.0, 80.0
                for _ in range(80):
                    mid = (lo + hi) / 2.0
                    lo, hi = (lo, mid) if k[t, t] * np.exp(mid) + rest > np.exp(-p * mid) else (mid, hi)
                w[t] = np.exp((lo + hi) / 2.0)
        if np.abs(w - previous).max() <= 1e-14 * w.max():
            return w
    raise AssertionError("coordinate descent did not converge")


def check_alpha_fair(projection, alpha, kind, num_tasks):
    base = gradient_set(kind, num_tasks).astype(np.float64)
    reference = spread(base, lambda rows: np_alpha_fair(rows, alpha), merge_duplicates=False)
    for scale in SCALES:
        g = base * scale
        # The equation's scale law: K -> s^2 K takes w to s^(-2 alpha / (alpha + 1)) w (s a power of 2: exact).
        want = reference * scale ** (-2.0 * alpha / (alpha + 1.0))
        combined, got = run(projection, g.astype("float32"))
        assert np.abs(got - want).max() <= TOLERANCE * want.max(), (kind, num_tasks, scale, got, want)
        assert vector_error(combined, want @ g, g, want) <= TOLERANCE
        # The defining equation on the float32 weights returned, (K w)_t = w_t^(-1/alpha), relative
        # to the terms of (K w)_t (the float32 rounding of w is amplified where they cancel).
        k, live = g @ g.T, got > 0
        residual = np.abs((k @ got)[live] - got[live] ** (-1.0 / alpha))
        assert (residual <= TOLERANCE * (np.abs(k) @ got)[live]).all(), (kind, num_tasks, scale, residual)


def test_nash_mtl_solves_the_bargaining_equation():
    for kind, num_tasks in CASES:
        check_alpha_fair(NashMTL(max_norm=0.0), 1.0, kind, num_tasks)


@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_fairgrad_solves_the_alpha_fair_equation(alpha):
    for kind, num_tasks in CASES:
        check_alpha_fair(FairGrad(alpha=alpha), alpha, kind, num_tasks)


def test_imtl_is_the_papers_closed_form():
    for kind, num_tasks in CASES:
        check_imtl(kind, num_tasks)


def test_aligned_mtl_from_the_svd_of_the_gradients():
    for kind, num_tasks in CASES:
        check_aligned_mtl(kind, num_tasks)


def test_upgrad_averages_the_projections_onto_the_dual_cone():
    for kind, num_tasks in CASES:
        check_upgrad(kind, num_tasks)
