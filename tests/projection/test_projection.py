import itertools
import re

import numpy as np
import pytest

from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.losses import CAGrad, GradVac, MGDA, ParetoEfficient, PCGrad

rng = np.random.default_rng(0)
CONFLICT_2 = np.array([[1.0, 0.2, -0.5], [-0.8, 0.6, 0.3]], "float32")
AGREE_2 = np.array([[1.0, 0.5, 0.0], [0.4, 1.0, 0.2]], "float32")
CONFLICT_3 = np.array([[2.0, 0.0, 0.3, 1.0], [-1.0, 1.0, 0.0, -0.5], [0.5, -1.5, 1.0, 0.2]], "float32")
AGREE_3 = np.abs(rng.normal(size=(3, 5))).astype("float32")
SETS = {"conflict2": CONFLICT_2, "agree2": AGREE_2, "conflict3": CONFLICT_3, "agree3": AGREE_3}


def np_pcgrad(g, orders):
    total = np.zeros(g.shape[1])
    for i in range(len(g)):
        gi = g[i].astype(float).copy()
        for j in orders[i]:
            if j != i and gi @ g[j] < 0:
                gi -= (gi @ g[j]) / (g[j] @ g[j]) * g[j]
        total += gi
    return total


@pytest.mark.parametrize("name", sorted(SETS))
def test_pcgrad_in_fixed_order(name):
    g = SETS[name]
    order = [list(range(len(g)))] * len(g)
    np.testing.assert_allclose(PCGrad(shuffle=False).combine(g).numpy(), np_pcgrad(g, order), atol=1e-5)


def test_pcgrad_without_conflict_is_the_plain_sum():
    for g in (AGREE_2, AGREE_3):
        np.testing.assert_allclose(PCGrad().combine(g).numpy(), g.sum(0), atol=1e-6)


def test_pcgrad_shuffles_among_the_valid_orders():
    g = CONFLICT_3
    candidates = []
    for perms in itertools.product(itertools.permutations(range(3)), repeat=3):
        candidates.append(np_pcgrad(g, perms))
    projection = PCGrad(seed=3)
    seen = set()
    for _ in range(30):
        result = projection.combine(g).numpy()
        distances = [np.abs(result - c).max() for c in candidates]
        assert min(distances) < 1e-5
        seen.add(tuple(np.round(result, 4)))
    assert len(seen) > 1, "the order never changed"


def np_gradvac(g, targets, beta, orders):
    targets = targets.copy()
    total = np.zeros(g.shape[1])
    for i in range(len(g)):
        gi = g[i].astype(float).copy()
        for j in orders[i]:
            if j == i:
                continue
            phi = gi @ g[j] / (np.linalg.norm(gi) * np.linalg.norm(g[j]) + 1e-8)
            t = targets[i, j]
            if phi < t:
                gi += (
                    np.linalg.norm(gi)
                    * (t * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - t**2))
                    / (np.linalg.norm(g[j]) * np.sqrt(1 - t**2) + 1e-8)
                    * g[j]
                )
            targets[i, j] = (1 - beta) * t + beta * phi
        total += gi
    return total, targets


@pytest.mark.parametrize("name", sorted(SETS))
def test_gradvac_matches_numpy_over_steps(name):
    g = SETS[name]
    t = len(g)
    projection = GradVac(beta=0.3, shuffle=False)
    targets = np.zeros((t, t))
    order = [list(range(t))] * t
    for step in range(3):
        grads = g if step != 1 else g[::-1].copy()  # targets must carry over between steps
        want, targets = np_gradvac(grads, targets, 0.3, order)
        np.testing.assert_allclose(projection.combine(grads).numpy(), want, atol=1e-4)
        np.testing.assert_allclose(np.array(projection.targets), targets, atol=1e-5)


def test_mgda_two_task_closed_form():
    # The last set has one gradient dominating (v1 . v2 >= v1 . v1): the exact weight is 1,
    # where the reference code clips to 0.999.
    for g in (CONFLICT_2, AGREE_2, np.array([[1.0, 0.0], [2.0, 0.1]], "float32")):
        v1, v2 = g.astype(float)
        gamma = np.clip((v2 @ v2 - v1 @ v2) / ((v1 - v2) @ (v1 - v2)), 0.0, 1.0)
        projection = MGDA(normalization="none")
        result = projection.combine(g).numpy()
        np.testing.assert_allclose(projection.last_weights.numpy(), [gamma, 1 - gamma], atol=1e-5)
        np.testing.assert_allclose(result, gamma * v1 + (1 - gamma) * v2, atol=1e-5)


def simplex_grid(t, steps=200):
    if t == 2:
        a = np.linspace(0, 1, steps + 1)
        return np.stack([a, 1 - a], 1)
    points = [(i, j, steps - i - j) for i in range(steps + 1) for j in range(steps + 1 - i)]
    return np.array(points, float) / steps


@pytest.mark.parametrize("normalization", ["none", "l2", "loss", "loss+"])
def test_mgda_three_tasks_reach_the_min_norm_point(normalization):
    g = CONFLICT_3.astype(float)
    losses = np.array([0.7, 1.3, 0.4])
    scale = {
        "none": np.ones(3),
        "l2": np.linalg.norm(g, axis=1),
        "loss": losses,
        "loss+": losses * np.linalg.norm(g, axis=1),
    }[normalization]
    normalized = g / scale[:, None]
    grid = simplex_grid(3)
    best = grid[np.argmin(np.linalg.norm(grid @ normalized, axis=1))]
    projection = MGDA(normalization=normalization)
    result = projection.combine(g, losses).numpy()
    w = projection.last_weights.numpy()
    assert w.min() >= -1e-6 and abs(w.sum() - 1) < 1e-5
    assert np.linalg.norm(w @ normalized) <= np.linalg.norm(best @ normalized) + 1e-3
    np.testing.assert_allclose(result, w @ g, atol=1e-5)  # weights act on the raw gradients


def test_mgda_loss_normalization_needs_losses():
    with pytest.raises(ValueError, match="task_losses"):
        MGDA("loss").combine(CONFLICT_2)
    with pytest.raises(ValueError, match="normalization"):
        MGDA("max")


def cagrad_objective(w, g, c):
    g0 = g.mean(0)
    gw = w @ g
    return gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw)


@pytest.mark.parametrize("name", sorted(SETS))
def test_cagrad_matches_the_formula(name):
    g = SETS[name].astype(float)
    c = 0.4
    projection = CAGrad(c=c)
    result = projection.combine(g).numpy()
    w = projection.last_weights.numpy()
    grid = simplex_grid(len(g))
    best = min(cagrad_objective(p, g, c) for p in grid)
    span = max(cagrad_objective(p, g, c) for p in grid) - best
    assert cagrad_objective(w, g, c) <= best + 0.02 * span + 1e-6
    g0, gw = g.mean(0), w @ g
    want = (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + c**2)
    np.testing.assert_allclose(result, want, rtol=2e-3, atol=2e-3)


def test_cagrad_is_the_mean_at_c_zero():
    for g in SETS.values():
        np.testing.assert_allclose(CAGrad(c=0.0).combine(g).numpy(), g.mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="`c`"):
        CAGrad(c=-0.1)


def np_simplex_projection(v, radius):
    lo, hi = v.min() - radius, v.max()
    for _ in range(200):  # bisection on the threshold, not the sort rule
        theta = (lo + hi) / 2
        if np.maximum(v - theta, 0).sum() > radius:
            lo = theta
        else:
            hi = theta
    return np.maximum(v - theta, 0)


@pytest.mark.parametrize("name", sorted(SETS))
def test_pareto_efficient_against_the_papers_relaxed_step(name):
    """Where the relaxed KKT solution is feasible it is the answer; elsewhere the exact one is no worse."""
    g = SETS[name].astype(float)
    t = len(g)
    c = np.array([0.2, 0.1, 0.05][:t])
    k = g @ g.T
    m = np.block([[k, np.ones((t, 1))], [np.ones((1, t)), np.zeros((1, 1))]])
    rhs = np.concatenate([-k @ c, [1 - c.sum()]])
    relaxed = np.linalg.solve(m, rhs)[:t]
    paper = np_simplex_projection(relaxed, 1 - c.sum()) + c
    projection = ParetoEfficient(min_weights=list(c))
    result = projection.combine(g).numpy()
    got = projection.last_weights.numpy()
    assert (got >= c - 1e-6).all() and abs(got.sum() - 1) < 1e-5
    if relaxed.min() >= 0:
        np.testing.assert_allclose(got, relaxed + c, atol=1e-5)
    assert got @ k @ got <= paper @ k @ paper + 1e-6
    np.testing.assert_allclose(result, got @ g, atol=1e-4)


def test_pareto_efficient_bad_bounds():
    with pytest.raises(ValueError, match="min_weights"):
        ParetoEfficient(min_weights={"ctr": 0.6, "cvr": 0.5})
    with pytest.raises(ValueError, match="min_weights"):
        ParetoEfficient(min_weights=[-0.1, 0.2])
    projection = ParetoEfficient(min_weights={"like": 0.2})
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['like'\]"):
        projection.build(2, ["ctr", "cvr"])


def test_gradvac_bad_beta_and_bad_shapes():
    with pytest.raises(ValueError, match="beta"):
        GradVac(beta=1.5)
    with pytest.raises(ValueError, match="task_gradients"):
        PCGrad().combine(np.zeros(3, "float32"))


# -- inside the train step -------------------------------------------------------------------
# Each method's coefficients a (combined = sum_t a_t g_t) from the rows it projects, in NumPy
# and float64, for two tasks on the first step (GradVac's targets still 0).

def np_two_task_min_norm(v1, v2, bounds=(0.0, 0.0)):
    """argmin ||w1 v1 + w2 v2|| over w1 + w2 = 1, w >= bounds: the unconstrained minimiser, clipped."""
    gamma = (v2 @ v2 - v1 @ v2) / ((v1 - v2) @ (v1 - v2))
    gamma = np.clip(gamma, bounds[0], 1.0 - bounds[1])
    return np.array([gamma, 1 - gamma])


def np_step_coefficients(name, rows, task_losses):
    if name == "gradvac":  # phi < target = 0: the PCGrad-like first step, on coefficient rows
        total = np.zeros(2)
        for i, j in ((0, 1), (1, 0)):
            row = np.eye(2)[i]
            gi = row @ rows
            phi = gi @ rows[j] / (np.linalg.norm(gi) * np.linalg.norm(rows[j]) + 1e-8)
            if phi < 0:
                row = row + np.linalg.norm(gi) * -phi / (np.linalg.norm(rows[j]) + 1e-8) * np.eye(2)[j]
            total += row
        return total
    if name == "mgda":  # "loss+": each row over loss * norm; the weights act on the raw rows
        scaled = rows / (task_losses * np.linalg.norm(rows, axis=1))[:, None]
        return np_two_task_min_norm(*scaled)
    if name == "pareto":  # min_weights {"ctr": 0.2, "cvr": 0.7}: w_ctr in [0.2, 0.3]
        free = np_two_task_min_norm(*rows, bounds=(-np.inf, -np.inf))
        assert not 0.2 < free[0] < 0.3, free  # a bound is active
        return np_two_task_min_norm(*rows, bounds=(0.2, 0.7))
    # CAGrad, c = 0.4: w = argmin over the simplex of g_w . g0 + c ||g0|| ||g_w||, on a fine grid.
    c, g0 = 0.4, rows.mean(0)
    p = np.linspace(0.0, 1.0, 20001)[:, None]
    gw = p * rows[0] + (1 - p) * rows[1]
    w = p[np.argmin(gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw, axis=1))][0]
    gw = w * rows[0] + (1 - w) * rows[1]
    return (0.5 + np.array([w, 1 - w]) * c * np.linalg.norm(g0) / np.linalg.norm(gw)) / (1 + c**2)


STEP_PROJECTIONS = {
    "gradvac": (lambda: GradVac(shuffle=False), 1e-5),
    "mgda": (lambda: MGDA(), 1e-5),
    "cagrad": (lambda: CAGrad(), 2e-3),  # its inner problem: 20 steps of SGD, as the authors' code
    "pareto": (lambda: ParetoEfficient({"ctr": 0.2, "cvr": 0.7}), 1e-5),
}
STEP_TASKS = ("ctr", "cvr")


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("name", sorted(STEP_PROJECTIONS))
def test_projection_inside_the_train_step_matches_numpy(name, mode):
    """One SGD(1) step: shared variables move by -sum_t a_t g_t, a from the method in NumPy on the
    shared variables' gradients (exact) or on the gradients at the shared representation (fast);
    every other variable by -(g_ctr + g_cvr)."""
    make, tolerance = STEP_PROJECTIONS[name]
    data_rng = np.random.default_rng(5)
    x = data_rng.normal(size=(64, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, :1] < 0.3).astype("float32")}  # conflicting
    keras.utils.set_random_seed(6)  # conflicting gradients at the first step, both modes
    model = models.shared_bottom(keras.Input((6,), name="x"), list(STEP_TASKS), bottom_units=(8,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss={t: "binary_crossentropy" for t in STEP_TASKS},
                  gradient_projection=make(), projection_mode=mode,
                  jit_compile=False)  # cheaper; XLA's step equals this one (tests/training/test_training.py)
    # Independent of the step: per-task losses, their gradients on every variable and at the representation.
    probe = keras.Model(model.input, [model.output[t] for t in STEP_TASKS] + [model.get_layer("shared_representation").output])
    bce = keras.losses.BinaryCrossentropy()
    with tf.GradientTape(persistent=True) as tape:
        *heads, representation = probe(x, training=True)
        task_losses = [bce(y[t], h) for t, h in zip(STEP_TASKS, heads)]
    variables = model.trainable_variables
    grads = [[np.zeros(v.shape) if g is None else np.asarray(g, np.float64) for g, v in zip(tape.gradient(l, variables), variables)]
             for l in task_losses]
    shared = {id(v) for v in model.shared_variables}
    if mode == "exact":
        rows = np.stack([np.concatenate([np.ravel(g) for g, v in zip(gs, variables) if id(v) in shared]) for gs in grads])
    else:
        rows = np.stack([np.ravel(np.asarray(tape.gradient(l, representation), np.float64)) for l in task_losses])
    cosine = rows[0] @ rows[1] / np.linalg.norm(rows, axis=1).prod()
    assert cosine < -0.05, cosine  # a conflict for the method to resolve
    a = np_step_coefficients(name, rows, np.array([float(l) for l in task_losses]))
    expected = [np.array(v) - (a[0] * g0 + a[1] * g1 if id(v) in shared else g0 + g1)
                for v, g0, g1 in zip(variables, *grads)]
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False).history
    for want, var in zip(expected, variables):
        np.testing.assert_allclose(np.array(var), want, atol=tolerance)
    assert history["grad_cosine/ctr__cvr"][0] == pytest.approx(cosine, abs=1e-4)


def test_coefficients_run_as_one_loop_block_under_xla_and_equal_the_eager_ones():
    """Under XLA the method's [T]-sized logic runs inside a one-iteration while loop that XLA
    keeps (the optimised HLO has a `while`: CAGrad has no loop of its own), with the eager
    result and ``last_weights`` carried out; without XLA no loop. Mutations caught: calling
    ``coefficients`` directly under XLA (no `while` left), reading ``gram`` without the loop
    counter (XLA hoists the body and drops the loop), not carrying ``last_weights`` out (a
    tensor of the loop body leaks)."""
    eager_method = CAGrad(c=0.4)
    eager = eager_method.combine(CONFLICT_3).numpy()
    eager_weights = eager_method.last_weights.numpy()

    method = CAGrad(c=0.4)
    method.build(3)
    step = tf.function(lambda g: (method.combine(g), method.last_weights), jit_compile=True)
    combined, weights = step(tf.constant(CONFLICT_3))
    np.testing.assert_allclose(combined.numpy(), eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights.numpy(), eager_weights, rtol=1e-5, atol=1e-6)
    optimized = step.experimental_get_compiler_ir(tf.constant(CONFLICT_3))(stage="optimized_hlo")
    body = re.search(r" while\(.*body=(%?[\w.\-]+)", optimized).group(1)
    start = optimized.index("\n" + body + " ")
    # The solver's 21 steps stay in the body (279 lines), not only the counter (10 when hoisted).
    assert len(optimized[start : optimized.index("\n}", start)].splitlines()) > 100

    graph = tf.function(lambda g: method.combine(g)).get_concrete_function(tf.constant(CONFLICT_3)).graph
    assert not any("While" in op.type for op in graph.get_operations())
