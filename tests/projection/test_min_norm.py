"""MGDA and ParetoEfficient against an exact float64 min-norm solution; PCGrad's official variant.

The reference below is written independently of mtl_keras/projection/min_norm.py:
for every support S it minimises ||G^T w||^2 over {w = c + x, sum x = r, x = 0
off S} by least squares on the gradients themselves (a null-space
parametrisation, float64), keeps the feasible points and takes the smallest
objective. A KKT certificate checks the reference itself (scipy is not
installed to cross-check it).
"""

import itertools

import numpy as np
import pytest

from mtl_keras.backend import keras, tf
from mtl_keras.losses import MGDA, ParetoEfficient, PCGrad
from conftest import BCE, click_data, two_tower_model, weights_of

SCALES = (1e-3, 1e-1, 1.0, 10.0, 1e3)
LOSSES = np.array([0.7, 1.3, 0.4, 0.9])
TOLERANCE = 1e-5


def reference_min_norm(g, c=None):
    """argmin ||sum_i w_i g_i||^2 s.t. w >= c, sum w = 1, by enumeration over the faces (T <= 4)."""
    g = np.asarray(g, np.float64)
    t = len(g)
    c = np.zeros(t) if c is None else np.asarray(c, np.float64)
    r = 1.0 - c.sum()
    best = None
    for size in range(1, t + 1):
        for support in itertools.combinations(range(t), size):
            x = np.zeros(t)
            x[list(support)] = r / size
            if size > 1:
                # Directions e_a - e_b inside the support span {sum x = 0} there.
                basis = np.zeros((t, size - 1))
                for k in range(size - 1):
                    basis[support[k], k], basis[support[k + 1], k] = 1.0, -1.0
                z = np.linalg.lstsq(g.T @ basis, -(g.T @ (c + x)), rcond=None)[0]
                x = x + basis @ z
            if x.min() < -1e-12:
                continue
            w = c + np.maximum(x, 0.0)
            objective = (w @ g) @ (w @ g)
            if best is None or objective < best[0]:
                best = (objective, w)
    return best[1]


def conflicting_four_tasks():
    """Four tasks, norms ~8, whose min-norm point has every weight inside: w* = [.30, .15, .27, .28].

    g_i = a e_0 + u_i with u_i orthogonal to e_0 and sum_i w*_i u_i = 0, so
    sum w*_i g_i = a e_0 and g_i . (a e_0) = a^2 for every i: the KKT conditions.
    """
    rng = np.random.default_rng(0)
    w = np.array([0.30, 0.15, 0.27, 0.28])
    u = rng.normal(size=(4, 6))
    u[:, 0] = 0.0
    u -= w @ u
    u *= 7.7 / np.linalg.norm(u, axis=1).mean()
    u[:, 0] = 2.0
    return u


rng = np.random.default_rng(7)
_BASE = rng.normal(size=(3, 5))
SETS = {
    "conflict3": np.array([[2.0, 0.0, 0.3, 1.0], [-1.0, 1.0, 0.0, -0.5], [0.5, -1.5, 1.0, 0.2]]),
    "four_tasks": conflicting_four_tasks(),
    "aligned": np.abs(_BASE) + 0.1,
    "zero": np.stack([_BASE[0], np.zeros(5), -0.5 * _BASE[0] + _BASE[1]]),
    "duplicated": np.stack([_BASE[0], _BASE[0], _BASE[1]]),
    "near_dependent": np.stack([_BASE[0], _BASE[1], 0.5 * _BASE[0] + 0.5 * _BASE[1] + 1e-4 * _BASE[2]]),
    "badly_scaled": np.stack([1e2 * _BASE[0], -1.0 * _BASE[0] + _BASE[1], 1e-2 * _BASE[2]]),
}
# Frank-Wolfe crawls here (0.3 off in weight, 2e-4 in the vector after 250 steps).
SETS["near_dependent4"] = SETS["four_tasks"].copy()
SETS["near_dependent4"][3] = 0.4 * SETS["four_tasks"][0] + 0.6 * SETS["four_tasks"][1] + 1e-3 * rng.normal(size=6)
SETS = {name: g.astype("float32") for name, g in SETS.items()}
# The minimiser itself is not unique (or not determined by a float32 Gram matrix):
# compare the min-norm vector sum w_i g_i, which is.
NOT_UNIQUE = {"duplicated", "near_dependent", "near_dependent4"}
BOUNDS = [0.2, 0.1, 0.05, 0.05]


def normalized(g, normalization):
    norms = np.linalg.norm(g, axis=1)
    scale = {
        "none": np.ones(len(g)),
        "l2": norms,
        "loss": LOSSES[: len(g)],
        "loss+": LOSSES[: len(g)] * norms,
    }[normalization]
    return g / np.where(scale > 0, scale, 1.0)[:, None]


def errors(got, want, g):
    """(max weight error, relative error of the min-norm vector) against the reference."""
    v, v_ref = got @ g, want @ g
    # A zero min-norm vector (a zero gradient in the hull): relative to the gradients' scale.
    floor = 1e-6 * np.linalg.norm(g, axis=1).max()
    return np.abs(got - want).max(), np.linalg.norm(v - v_ref) / max(np.linalg.norm(v_ref), floor)


def check(name, scale, projection, g_reference, bounds=None, losses=None):
    g = SETS[name] * np.float32(scale)
    result = projection.combine(g, losses).numpy()
    got = projection.last_weights.numpy().astype(np.float64)
    want = reference_min_norm(g_reference(g.astype(np.float64)), bounds)
    assert abs(got.sum() - 1.0) < 1e-6 and got.min() >= (0 if bounds is None else min(bounds)) - 1e-7
    weight_error, vector_error = errors(got, want, g_reference(g.astype(np.float64)))
    assert vector_error < TOLERANCE, (name, scale, got, want)
    if name not in NOT_UNIQUE:
        assert weight_error < TOLERANCE, (name, scale, got, want)
    np.testing.assert_allclose(result, got @ g, rtol=1e-5, atol=1e-6 * np.abs(g).max())
    return weight_error, vector_error


@pytest.mark.parametrize("name", sorted(SETS))
def test_reference_is_the_constrained_minimum(name):
    """KKT certificate: (K w)_i equals the multiplier where w_i > c_i and is not below it at the bound."""
    g = SETS[name].astype(np.float64)
    for c in (np.zeros(len(g)), np.array(BOUNDS[: len(g)])):
        w = reference_min_norm(g, c)
        kw = g @ (w @ g)
        free = w > c + 1e-9
        mu = kw[free].mean()
        scale = (g * g).sum(1).max()
        assert np.abs(kw[free] - mu).max() < 1e-9 * scale
        assert (kw[~free] >= mu - 1e-9 * scale).all()


@pytest.mark.parametrize("scale", SCALES)
def test_pareto_four_tasks_at_every_scale_is_not_uniform(scale):
    """The case from the issue: the float32 pinv gave [0.25] * 4 at these norms."""
    projection = ParetoEfficient()
    projection.combine(SETS["four_tasks"] * np.float32(scale))
    np.testing.assert_allclose(projection.last_weights.numpy(), [0.30, 0.15, 0.27, 0.28], atol=1e-5)


@pytest.mark.parametrize("bounded", [False, True], ids=["no_bounds", "bounds"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_pareto_efficient_is_the_exact_min_norm_point(name, bounded):
    t = len(SETS[name])
    bounds = BOUNDS[:t] if bounded else None
    for scale in SCALES:
        check(name, scale, ParetoEfficient(min_weights=bounds), lambda g: g, bounds)


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_mgda_is_the_exact_min_norm_point(name, normalization):
    losses = LOSSES[: len(SETS[name])].astype("float32")
    for scale in SCALES:
        check(name, scale, MGDA(normalization), lambda g: normalized(g, normalization), losses=losses)


def test_min_norm_under_xla_is_exact():
    g = SETS["four_tasks"]
    for projection in (MGDA("l2"), ParetoEfficient(min_weights=BOUNDS)):
        step = tf.function(lambda x, p=projection: (p.combine(x, LOSSES), p.last_weights), jit_compile=True)
        for scale in SCALES:
            _, weights = step(g * np.float32(scale))
            want_g = normalized(g.astype(np.float64), "l2") if isinstance(projection, MGDA) else g
            want = reference_min_norm(want_g, None if isinstance(projection, MGDA) else BOUNDS)
            np.testing.assert_allclose(weights.numpy(), want, atol=TOLERANCE)


def test_more_tasks_than_enumerated_converge():
    """Past 10 tasks the projected-gradient fallback reaches the optimum's objective."""
    g = np.random.default_rng(3).normal(size=(12, 8)).astype("float32")
    projection = MGDA("none", max_iterations=20000, tolerance=1e-12)
    projection.combine(g)
    w = projection.last_weights.numpy().astype(np.float64)
    assert abs(w.sum() - 1) < 1e-6 and w.min() >= 0
    kw = g.astype(np.float64) @ (w @ g)
    # Optimality gap of a simplex point: w^T K w - min_i (K w)_i (Frank-Wolfe gap / 2).
    assert w @ kw - kw.min() < 1e-5 * kw.max()


@pytest.mark.parametrize("make", [lambda: MGDA("none"), ParetoEfficient], ids=["mgda", "pareto"])
def test_non_finite_gradients_give_nan_weights_not_an_error(make):
    """The step must get as far as the caller's non-finite check (the CPU solve raises on NaN)."""
    projection = make()
    step = tf.function(lambda x: (projection.combine(x), projection.last_weights))
    _, weights = step(np.array([[1.0, np.nan], [0.0, 1.0]], "float32"))
    assert np.isnan(weights.numpy()).all()
    _, weights = step(np.array([[1.0, 0.0], [np.inf, 1.0]], "float32"))
    assert np.isnan(weights.numpy()).all()


def np_pcgrad_official(g):
    """The authors' PCGrad_tf.py: every task (itself included) in the given order."""
    total = np.zeros(g.shape[1])
    for grad in g.astype(np.float64):
        for other in g.astype(np.float64):
            grad = grad - min(grad @ other / (other @ other), 0.0) * other
        total += grad
    return total


PCGRAD_SELF = np.array([[0.4, 0.4, 0.3], [0.7, -0.3, 0.0], [0.5, 1.7, -0.8], [-1.8, -0.5, 0.1]], "float32")


def test_pcgrad_project_on_self_is_the_official_code():
    official = np_pcgrad_official(PCGRAD_SELF)
    np.testing.assert_allclose(
        PCGrad(shuffle=False, project_on_self=True).combine(PCGRAD_SELF).numpy(), official, atol=1e-5
    )
    # The paper's rule (j != i) differs here: task 3 is turned against itself by the others.
    assert np.abs(PCGrad(shuffle=False).combine(PCGRAD_SELF).numpy() - official).max() > 0.05
    config = PCGrad(project_on_self=True).get_config()
    assert config["project_on_self"] is True
    assert PCGrad.from_config(config).project_on_self is True


@pytest.mark.parametrize(
    "make",
    [lambda: MGDA("loss"), lambda: ParetoEfficient(min_weights={"ctr": 0.2}), lambda: PCGrad(project_on_self=True)],
    ids=["mgda", "pareto", "pcgrad_official"],
)
def test_trains_in_a_compiled_step_with_xla(make):
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(5)
        model = two_tower_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, gradient_projection=make(), jit_compile=jit)
        x, y = click_data(n=96)
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
        assert np.all(np.isfinite(history.history["loss"]))
        results.append(weights_of(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-5)
