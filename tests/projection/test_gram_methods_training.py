"""IMTL, Nash-MTL, Aligned-MTL, UPGrad and FairGrad inside the train step, saved and resumed, and
their arguments, degenerate inputs, names and configs."""

import itertools

import numpy as np
import pytest

import mtl_keras
from conftest import save_and_load
from mtl_keras import datasets, losses, models
from mtl_keras.backend import keras, tf

METHODS = {
    "imtl": losses.IMTL,
    "nash_mtl": losses.NashMTL,
    "aligned_mtl": losses.AlignedMTL,
    "upgrad": losses.UPGrad,
    "fairgrad": losses.FairGrad,
}
TASKS = ("task1", "task2")
LR = 0.05


def data():
    x, y = datasets.synthetic_tasks(256, correlation=0.3, dim=8, seed=1)
    return x, y


def build():
    keras.utils.set_random_seed(11)
    return models.shared_bottom(
        keras.Input((8,), name="x"), list(TASKS), bottom_units=(16,), tower_units=(8,), task_types="regression"
    )


def compiled(projection, mode="exact"):
    """Without XLA (4x quicker to compile here); test_under_xla_as_eagerly covers XLA."""
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(LR), loss={t: "mse" for t in TASKS},
                  gradient_projection=projection, projection_mode=mode, jit_compile=False)
    return model


def weights_of(model):
    return [np.array(v) for v in model.trainable_variables]


def expected_step(model, projection, x, y, mode):
    """Each variable after one SGD step on the whole batch, from per-task gradients taken outside the
    train step: shared variables move by sum_t a_t g_t, a from K of the mode's gradients."""
    mse = keras.losses.MeanSquaredError()
    representation = model.get_layer("shared_representation").output
    probe = keras.Model(model.input, [representation, model.outputs])
    with tf.GradientTape(persistent=True) as tape:
        rep, outputs = probe(x, training=True)
        task_losses = [mse(y[t], o) for t, o in zip(TASKS, outputs)]
    variables = model.trainable_variables
    grads = [
        [np.zeros(v.shape) if g is None else np.array(g) for g, v in zip(tape.gradient(loss, variables), variables)]
        for loss in task_losses
    ]
    shared = {id(v) for v in model.shared_variables}
    if mode == "exact":
        rows = np.stack([np.concatenate([g.ravel() for g, v in zip(gs, variables) if id(v) in shared]) for gs in grads])
    else:
        rows = np.stack([np.ravel(tape.gradient(loss, rep)) for loss in task_losses])
    gram = (rows.astype(np.float64) @ rows.T.astype(np.float64)).astype("float32")
    a = projection.coefficients(tf.constant(gram), tf.constant([float(l) for l in task_losses])).numpy()
    return [
        np.array(v) - LR * sum(c * g[k] for c, g in zip(a if id(v) in shared else np.ones(2), grads))
        for k, v in enumerate(variables)
    ]


# Nash-MTL updating every other step: a resumed run needs its kept weights and step counter.
MAKE = dict(METHODS, nash_mtl=lambda: losses.NashMTL(update_weights_every=2))


def fresh(name):
    projection = MAKE[name]()
    projection.build(len(TASKS), list(TASKS))
    return projection


@pytest.mark.parametrize("name", sorted(METHODS))
def test_in_the_step_resumed_from_a_keras_file_and_trained(name, tmp_path):
    """Exact mode: the first step applies the method's combination; a .keras file saved after it
    resumes as the uninterrupted run goes on (state included); training gets as low as equal weights
    x 1.1. Fast mode: the first step combines with K of the representation's gradients."""
    x, y = data()
    for mode in ("fast", "exact"):
        model = compiled(MAKE[name](), mode)
        want = expected_step(model, fresh(name), x[:64], {t: v[:64] for t, v in y.items()}, mode)
        model.fit(x[:64], {t: v[:64] for t, v in y.items()}, batch_size=64, epochs=1, verbose=0, shuffle=False)
        for got, expected in zip(weights_of(model), want):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5, err_msg=f"{name} {mode}")
    # From here on `model` is the exact-mode one, after its first step.
    loaded = save_and_load(model, tmp_path)
    assert type(loaded.training_state.projection) is METHODS[name]
    for model_ in (model, loaded):
        model_.fit(x, y, batch_size=64, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(weights_of(loaded), weights_of(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    state = model.training_state.projection.state_variables
    for key, variable in loaded.training_state.projection.state_variables.items():
        np.testing.assert_array_equal(np.array(variable), np.array(state[key]))
    history = model.fit(x, y, batch_size=64, epochs=8, verbose=0, shuffle=False).history
    assert history["loss"][-1] <= 1.1 * equal_weights_loss(), (name, history["loss"][-1])


_EQUAL = []


def equal_weights_loss():
    """The same schedule (10 epochs after one 64-row step) with equal weights and no projection."""
    if not _EQUAL:
        x, y = data()
        model = compiled(None)
        model.fit(x[:64], {t: v[:64] for t, v in y.items()}, batch_size=64, epochs=1, verbose=0, shuffle=False)
        _EQUAL.append(model.fit(x, y, batch_size=64, epochs=9, verbose=0, shuffle=False).history["loss"][-1])
    return _EQUAL[0]


CONFLICT = np.array([[2.0, 0.0, 0.5, 1.0], [-1.0, 1.0, 0.0, -0.5], [0.5, -1.5, 1.0, 0.25]], "float32")


def test_under_xla_as_eagerly():
    for name, projection in [("imtl", losses.IMTL()), ("nash_mtl", losses.NashMTL(max_norm=0.0)),
                             ("aligned_mtl", losses.AlignedMTL()), ("upgrad", losses.UPGrad()),
                             ("fairgrad", losses.FairGrad(alpha=2.0))]:
        projection.build(3)
        projection.combine(CONFLICT)
        eager = projection.last_weights.numpy()
        step = tf.function(lambda g, p=projection: (p.combine(g), p.last_weights), jit_compile=True)
        combined, weights = step(CONFLICT)
        np.testing.assert_allclose(weights.numpy(), eager, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(combined.numpy(), eager @ CONFLICT, rtol=1e-5, atol=1e-5, err_msg=name)


def test_names_configs_and_keras_serialization():
    custom = {
        "imtl": losses.IMTL(),
        "nash_mtl": losses.NashMTL(update_weights_every=3, max_norm=2.0, max_iterations=50, tolerance=1e-8),
        "aligned_mtl": losses.AlignedMTL(),
        "upgrad": losses.UPGrad(),
        "fairgrad": losses.FairGrad(alpha=2.0, max_iterations=40, tolerance=1e-7),
    }
    for name, projection in custom.items():
        assert type(mtl_keras.projection.get(name)) is METHODS[name]
        assert getattr(mtl_keras.projection, METHODS[name].__name__) is METHODS[name]
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(projection))
        assert type(revived) is METHODS[name] and revived.get_config() == projection.get_config()


BAD_ARGUMENTS = [
    (lambda: losses.FairGrad(alpha=0.0), "`alpha` must be > 0"),
    (lambda: losses.FairGrad(alpha=-1.0), "`alpha` must be > 0"),
    (lambda: losses.FairGrad(tolerance=0.0), "`tolerance` must be > 0"),
    (lambda: losses.FairGrad(max_iterations=0), "`max_iterations` must be an integer >= 1"),
    (lambda: losses.NashMTL(update_weights_every=0), "`update_weights_every` must be an integer >= 1"),
    (lambda: losses.NashMTL(update_weights_every=1.5), "`update_weights_every` must be an integer >= 1"),
    (lambda: losses.NashMTL(max_norm=-1.0), "`max_norm` must be >= 0"),
    (lambda: losses.NashMTL(tolerance=-1e-9), "`tolerance` must be > 0"),
    (lambda: losses.NashMTL(max_iterations=2.5), "`max_iterations` must be an integer >= 1"),
    (lambda: losses.UPGrad().build(11), "at most 10 tasks; got 11"),
]


def test_bad_arguments():
    for make, message in BAD_ARGUMENTS:
        with pytest.raises(ValueError, match=message):
            make()


DEGENERATE = {
    "zero": [[1.0, 0.5, 0.0], [0.0, 0.0, 0.0], [-0.5, 1.0, 0.0]],
    "all_zero": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
    "duplicated": [[1.0, -0.5, 0.0], [1.0, -0.5, 0.0], [0.0, 1.0, 1.0]],
    "opposite": [[1.0, -0.5, 2.0], [-1.0, 0.5, -2.0]],
    "opposite_scaled": [[1.0, -0.5, 2.0], [-3.0, 1.5, -6.0]],
    "rank_deficient": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]],
}


def test_degenerate_gradients_give_the_documented_finite_result():
    for name, kind in itertools.product(METHODS, DEGENERATE):
        rows = DEGENERATE[kind]
        g = np.array(rows, "float32")
        projection = METHODS[name]()
        combined, weights = projection.combine(g).numpy(), projection.last_weights.numpy()
        assert np.isfinite(combined).all() and np.isfinite(weights).all(), (name, kind, weights)
        size = np.linalg.norm(g, axis=1).max()
        if kind in ("zero", "all_zero") and name != "upgrad":
            assert (weights[~g.any(axis=1)] == 0).all(), (name, kind, weights)  # no weight on a zero gradient
        if kind == "all_zero":
            assert not combined.any()
        if kind == "duplicated" and name != "upgrad":  # UPGrad's coefficients are not unique then
            assert weights[0] == pytest.approx(weights[1], rel=1e-5), (name, weights)
        if kind == "opposite" or (kind == "opposite_scaled" and name != "aligned_mtl"):
            # No direction improves both: a zero update (Aligned-MTL: only for equal norms; Nash-MTL
            # and FairGrad: up to the float32 rounding of their ~1e4 weights).
            tolerance = 2e-3 if name in ("nash_mtl", "fairgrad") else 1e-5
            assert np.linalg.norm(combined) <= tolerance * size, (name, kind, combined)
        if name == "upgrad":
            assert (g @ combined >= -1e-5 * size**2).all(), (kind, combined)  # never conflicts


def test_non_finite_gradients_give_nan_weights_not_an_error():
    for name, cls in METHODS.items():
        projection = cls()
        projection.build(2)
        step = tf.function(lambda g, p=projection: (p.combine(g), p.last_weights))
        _, weights = step(np.array([[1.0, np.nan], [0.0, 1.0]], "float32"))
        assert np.isnan(weights.numpy()).all(), name


def test_nash_mtl_keeps_its_weights_between_updates_and_clips():
    """update_weights_every=2: steps 0 and 2 solve, step 1 reuses step 0's alpha on its own gradients;
    the combined gradient is clipped to max_norm."""
    projection = losses.NashMTL(update_weights_every=2, max_norm=0.5)
    solver = losses.NashMTL(max_norm=0.0)
    sets = [CONFLICT, CONFLICT * np.float32(3.0), CONFLICT[::-1].copy()]
    alphas = []
    for step, g in enumerate(sets):
        combined = projection.combine(g).numpy()
        solver.combine(g)
        alpha = solver.last_weights.numpy() if step != 1 else alphas[0]
        np.testing.assert_allclose(projection.last_weights.numpy(), alpha, rtol=1e-6)
        alphas.append(alpha)
        unclipped = alpha @ g
        want = unclipped * min(1.0, 0.5 / np.linalg.norm(unclipped))
        np.testing.assert_allclose(combined, want, rtol=1e-5, atol=1e-6)
        assert float(projection.step) == step + 1
        np.testing.assert_allclose(np.array(projection.weights), alpha, rtol=1e-6)
    # Step 1 used stale weights: its update is not the bargaining solution of its own gradients.
    assert np.abs(alphas[1] - alphas[0] / 3.0).max() > 0.1 * alphas[0].max()
