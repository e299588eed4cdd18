"""Task weightings, gradient projections and the train-step options of MultiTaskModel."""

import numpy as np
import pytest

from mtl_keras import MultiTaskModel, losses, models
from mtl_keras.backend import keras, tf
from conftest import BCE, click_data, two_tower_model, weights_of

PROJECTIONS = {
    "pcgrad": lambda: losses.PCGrad(),
    "gradvac": lambda: losses.GradVac(),
    "mgda": lambda: losses.MGDA(),
    "cagrad": lambda: losses.CAGrad(),
    "pareto": lambda: losses.ParetoEfficient(min_weights={"ctr": 0.2}),
}


def per_task_gradients(model, x, y):
    """Independent of the train step: each task's BCE gradient, by variable."""
    bce = keras.losses.BinaryCrossentropy()
    with tf.GradientTape(persistent=True) as tape:
        pred = model(x, training=True)
        task_losses = {t: bce(y[t], pred[t]) for t in ("ctr", "cvr")}
    grads = {
        t: [g if g is not None else tf.zeros_like(v) for g, v in zip(tape.gradient(l, model.trainable_variables), model.trainable_variables)]
        for t, l in task_losses.items()
    }
    return grads, task_losses


def test_pcgrad_step_projects_only_the_shared_variables():
    model = two_tower_model()
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=BCE, gradient_projection=losses.PCGrad(shuffle=False))
    x, y = click_data(n=64)
    grads, _ = per_task_gradients(model, x, y)
    shared = {id(v) for v in model.shared_variables}
    flat = {t: np.concatenate([np.ravel(g) for g, v in zip(gs, model.trainable_variables) if id(v) in shared]) for t, gs in grads.items()}
    a, b = flat["ctr"], flat["cvr"]
    pa = a - min(a @ b, 0) / (b @ b) * b
    pb = b - min(a @ b, 0) / (a @ a) * a
    combined = pa + pb
    start = weights_of(model)
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False)
    offset = 0
    for old, var, ga, gb in zip(start, model.trainable_variables, grads["ctr"], grads["cvr"]):
        if id(var) in shared:
            size = old.size
            expected = old - combined[offset:offset + size].reshape(old.shape)
            offset += size
        else:
            expected = old - (np.array(ga) + np.array(gb))
        np.testing.assert_allclose(np.array(var), expected, atol=1e-5)
    cosine = history.history["grad_cosine/ctr__cvr"][0]
    assert cosine == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-5)


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_every_projection_trains_with_and_without_xla(name):
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(5)
        model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=3)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, gradient_projection=PROJECTIONS[name](), jit_compile=jit)
        x, y = click_data(n=96)
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False)
        assert np.all(np.isfinite(history.history["loss"]))
        assert "grad_cosine/ctr__cvr" in history.history
        results.append(weights_of(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_gradient_cosine_without_a_projection_leaves_the_step_unchanged():
    x, y = click_data(n=64)
    runs = []
    for log in (False, True):
        keras.utils.set_random_seed(2)
        model = two_tower_model()
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=BCE, log_gradient_cosine=log)
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False).history
        runs.append((weights_of(model), history))
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert "grad_cosine/ctr__cvr" not in runs[0][1] and -1 <= runs[1][1]["grad_cosine/ctr__cvr"][0] <= 1


def test_uncertainty_weighting_learns_its_log_variances():
    model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=2, task_types={"ctr": "binary", "cvr": "regression"})
    weighting = losses.UncertaintyWeighting()
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss={"ctr": "binary_crossentropy", "cvr": "mse"}, task_weighting=weighting)
    x, y = click_data(n=128)
    y["cvr"] = y["cvr"] * 3.0
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    s = np.array(weighting.log_variances)
    assert np.all(np.abs(s) > 1e-3), s  # it moved
    # Logged weights: classification 1/exp(s), regression 1/(2 exp(s)), at s = 0 in the first step.
    assert history["ctr_weight"][0] < 1.0 + 1e-6 and history["cvr_weight"][0] < 0.5 + 1e-6
    weights = weighting.weights(tf.constant([1.0, 1.0])).numpy()
    assert weights[0] == pytest.approx(np.exp(-s[0]), rel=1e-5)
    assert weights[1] == pytest.approx(0.5 * np.exp(-s[1]), rel=1e-5)
    scores = model.evaluate(x, y, verbose=0, return_dict=True, batch_size=128)
    expected = weights[0] * scores["ctr_loss"] + weights[1] * scores["cvr_loss"] + s.sum() / 2
    assert scores["loss"] == pytest.approx(expected, rel=1e-5)


def test_gradnorm_weights_sum_to_the_task_count_every_step():
    model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=3)
    weighting = losses.GradNorm(alpha=1.5, learning_rate=0.05)
    model.compile(optimizer="adam", loss=BCE, task_weighting=weighting)
    assert weighting.shared_variable is model.get_layer("mmoe").experts.kernels[-1]
    x, y = click_data(n=160)
    y["cvr"] = np.where(np.random.default_rng(0).random(y["cvr"].shape) < 0.5, y["cvr"], 1 - y["cvr"])
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(np.array(weighting.task_weights))

    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[Record()])
    seen = np.array(seen)
    np.testing.assert_allclose(seen.sum(1), 2.0, atol=1e-5)
    assert np.abs(seen[-1] - 1.0).max() > 1e-3  # the weights moved


def test_dwa_is_equal_for_two_epochs_then_follows_the_formula():
    model = two_tower_model()
    model.compile(optimizer="adam", loss=BCE, task_weighting=losses.DynamicWeightAverage(temperature=2.0))
    x, y = click_data(n=128)
    h = model.fit(x, y, epochs=4, batch_size=32, verbose=0).history
    for epoch in (0, 1):
        assert h["ctr_weight"][epoch] == pytest.approx(1.0) and h["cvr_weight"][epoch] == pytest.approx(1.0)
    for epoch in (2, 3):
        r = np.array([h["ctr_loss"][epoch - 1] / h["ctr_loss"][epoch - 2], h["cvr_loss"][epoch - 1] / h["cvr_loss"][epoch - 2]])
        want = 2 * np.exp(r / 2.0) / np.exp(r / 2.0).sum()
        np.testing.assert_allclose([h["ctr_weight"][epoch], h["cvr_weight"][epoch]], want, atol=1e-5)


def test_task_start_steps_hold_a_task_out_until_its_step():
    model = two_tower_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=BCE, task_start_steps={"cvr": 4})
    x, y = click_data(n=64)
    tower = model.get_layer("cvr_tower").trainable_variables + model.get_layer("cvr").trainable_variables
    before = [np.array(v) for v in tower]
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # steps 0..3
    for old, var in zip(before, tower):
        np.testing.assert_array_equal(np.array(var), old)
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)  # steps 4..7
    assert history.history["cvr_weight"] == [pytest.approx(1.0)]
    assert any(not np.allclose(np.array(var), old) for old, var in zip(before, tower))


def test_optimizer_groups_apply_their_own_optimizer():
    model = two_tower_model()
    model.compile(
        optimizer={"shared": keras.optimizers.SGD(0.0), "ctr": keras.optimizers.SGD(0.1), "cvr": keras.optimizers.SGD(0.0)},
        loss=BCE,
    )
    x, y = click_data(n=64)
    shared = np.array(model.get_layer("shared").kernel)
    ctr = np.array(model.get_layer("ctr_tower").kernel)
    cvr = np.array(model.get_layer("cvr_tower").kernel)
    model.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_array_equal(np.array(model.get_layer("shared").kernel), shared)
    np.testing.assert_array_equal(np.array(model.get_layer("cvr_tower").kernel), cvr)
    assert not np.allclose(np.array(model.get_layer("ctr_tower").kernel), ctr)


def test_compiled_projection_round_trips(tmp_path):
    model = two_tower_model()
    # Without XLA: compiling CAGrad's solver twice took 20 s of this test; the round trip is the point.
    model.compile(loss=BCE, gradient_projection=losses.CAGrad(c=0.3), task_weighting=losses.DynamicWeightAverage(3.0),
                  jit_compile=False)
    x, y = click_data()
    model.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.training_state.projection, losses.CAGrad) and loaded.training_state.projection.c == 0.3
    assert loaded.training_state.weighting.temperature == 3.0
    assert loaded.jit_compile is False  # the given compile options travel too
    loaded.fit(x, y, epochs=1, verbose=0)


class TestBadInput:
    def test_projection_without_shared_variables(self):
        x = keras.Input((3,), name="x")
        model = MultiTaskModel(x, {"a": keras.layers.Dense(1, name="a")(x), "b": keras.layers.Dense(1, name="b")(x)})
        with pytest.raises(ValueError, match="`gradient_projection` needs shared variables"):
            model.compile(loss={"a": "mse", "b": "mse"}, gradient_projection=losses.PCGrad())

    def test_not_a_projection(self):
        with pytest.raises(ValueError, match=r"`gradient_projection` 'pc_grad' is not a known GradientProjection; expected one of \['aligned_mtl', 'cagrad', 'db_mtl', 'fairgrad', 'graddrop', 'gradvac', 'imtl', 'mgda', 'moco', 'modo', 'nash_mtl', 'pareto', 'pcgrad', 'rgw', 'sdmgrad', 'upgrad'\]"):
            two_tower_model().compile(loss=BCE, gradient_projection="pc_grad")
        with pytest.raises(ValueError, match="`gradient_projection` must be"):
            two_tower_model().compile(loss=BCE, gradient_projection=losses.UncertaintyWeighting())

    def test_optimizer_groups(self):
        with pytest.raises(ValueError, match=r"unknown group\(s\) \['towers'\]"):
            two_tower_model().compile(loss=BCE, optimizer={"towers": "adam", "default": "adam"})
        with pytest.raises(ValueError, match="no group 'cvr' and no 'default'"):
            two_tower_model().compile(loss=BCE, optimizer={"shared": "adam", "ctr": "adam"})

    def test_task_start_steps(self):
        with pytest.raises(ValueError, match=r"`task_start_steps` names unknown task\(s\) \['like'\]"):
            two_tower_model().compile(loss=BCE, task_start_steps={"like": 3})
        with pytest.raises(ValueError, match="integer >= 0"):
            two_tower_model().compile(loss=BCE, task_start_steps={"cvr": -1})

    def test_weighting_arguments(self):
        with pytest.raises(ValueError, match="alpha"):
            losses.GradNorm(alpha=-1)
        with pytest.raises(ValueError, match="temperature"):
            losses.DynamicWeightAverage(temperature=0)
        with pytest.raises(ValueError, match="task_types"):
            losses.UncertaintyWeighting(task_types={"ctr": "ordinal"})
        with pytest.raises(ValueError, match=r"unknown task\(s\) \['like'\]"):
            two_tower_model().compile(loss=BCE, gradient_projection=losses.ParetoEfficient({"like": 0.1}))


@pytest.mark.parametrize("builder, from_representation", [
    (lambda x: models.mmoe(x, ["ctr", "cvr"], num_experts=3), True),
    (lambda x: models.ple(x, ["ctr", "cvr"]), False),  # nested levels: vectorized from the losses
], ids=["mmoe", "ple"])
def test_jacobian_and_loop_task_gradients_agree(builder, from_representation):
    x, y = click_data(n=96)
    runs = {}
    for method in ("loop", "jacobian"):
        keras.utils.set_random_seed(4)
        model = builder(keras.Input((6,), name="x"))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=BCE, task_gradient_method=method,
                      gradient_projection=losses.PCGrad(shuffle=False))
        history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False).history
        runs[method] = (weights_of(model), history["grad_cosine/ctr__cvr"][0])
    assert model._mtl_trainer.mode.vectorized_from_representation is from_representation
    assert abs(runs["loop"][1]) > 1e-3
    assert runs["jacobian"][1] == pytest.approx(runs["loop"][1], abs=1e-5)
    for a, b in zip(runs["loop"][0], runs["jacobian"][0]):
        np.testing.assert_allclose(a, b, atol=1e-5)


def np_pcgrad_coefficients(gram):
    """PCGrad in a fixed order, written on coefficient vectors over the task gradients."""
    t = len(gram)
    total = np.zeros(t)
    for i in range(t):
        row = np.eye(t)[i]
        for j in range(t):
            dot = row @ gram[:, j]
            if j != i and dot < 0:
                row = row - dot / gram[j, j] * np.eye(t)[j]
        total += row
    return total


def test_fast_mode_combines_with_the_representation_gram():
    model = models.shared_bottom(keras.Input((6,), name="x"), ["ctr", "cvr"], bottom_units=(8,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=BCE, gradient_projection=losses.PCGrad(shuffle=False),
                  projection_mode="fast")
    x, y = click_data(n=64)
    bce = keras.losses.BinaryCrossentropy()
    rep_model = keras.Model(model.input, model.get_layer("shared_representation").output)
    with tf.GradientTape(persistent=True) as tape:
        pred = model(x, training=True)
        rep = rep_model(x, training=True)
        task_losses = [bce(y[t], pred[t]) for t in ("ctr", "cvr")]
    # The gradient with respect to the representation, recomputed through the towers only.
    tower_rep = tf.Variable(rep)
    with tf.GradientTape(persistent=True) as rep_tape:
        heads = {t: model.get_layer(t)(model.get_layer(f"{t}_tower_0")(tower_rep)) for t in ("ctr", "cvr")}
        rep_losses = [bce(y[t], heads[t]) for t in ("ctr", "cvr")]
    rows = np.stack([np.ravel(rep_tape.gradient(l, tower_rep)) for l in rep_losses])
    a = np_pcgrad_coefficients(rows @ rows.T)
    shared = {id(v) for v in model.shared_variables}
    expected = []
    for v in model.trainable_variables:
        grads = [tape.gradient(l, v) for l in task_losses]
        grads = [np.zeros(v.shape) if g is None else np.array(g) for g in grads]
        coefficient = a if id(v) in shared else np.ones(2)
        expected.append(np.array(v) - sum(c * g for c, g in zip(coefficient, grads)))
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False).history
    for want, var in zip(expected, model.trainable_variables):
        np.testing.assert_allclose(np.array(var), want, atol=1e-5)
    assert history["grad_cosine/ctr__cvr"][0] == pytest.approx(rows[0] @ rows[1] / np.linalg.norm(rows, axis=1).prod(), abs=1e-5)


@pytest.mark.parametrize("builder", ["mmoe", "ple"])
def test_fast_mode_trains_expert_models(builder):
    model = getattr(models, builder)(keras.Input((6,), name="x"), ["ctr", "cvr"])
    model.compile(optimizer="adam", loss=BCE, gradient_projection=losses.MGDA(), projection_mode="fast")
    x, y = click_data(n=96)
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["loss"][1] < history["loss"][0]


def test_fast_mode_needs_a_shared_representation():
    with pytest.raises(ValueError, match="projection_mode='fast'` needs a shared representation"):
        two_tower_model().compile(loss=BCE, gradient_projection=losses.PCGrad(), projection_mode="fast")
    with pytest.raises(ValueError, match="projection_mode"):
        two_tower_model().compile(loss=BCE, projection_mode="quick")
