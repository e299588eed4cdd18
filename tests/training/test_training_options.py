"""Train-step options documented in README.md and docs/train.md, each against what it promises:
a head without a loss keeps its weights, outputs keyed and ordered by task, and the cases in
which ``compile`` leaves XLA off (``resolve_jit_compile``)."""

import numpy as np
import pytest

from mtl_keras import models
from mtl_keras.backend import IS_KERAS3, keras, tf
from mtl_keras.training import step as step_lib

TASKS = ("zeta", "alpha", "mid")  # not sorted: dict order must be the model's, not alphabetical


def data(n=48):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {t: (x[:, i:i + 1] > 0).astype("float32") for i, t in enumerate(TASKS)}
    return x, y


def build():
    keras.utils.set_random_seed(8)
    return models.shared_bottom(keras.Input((6,), name="x"), list(TASKS), bottom_units=(8,), tower_units=(4,))


def expert_model():
    """An MMoE: the XLA choices below are checked on a model XLA is the default for."""
    keras.utils.set_random_seed(8)
    return models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=2, expert_units=(8,), tower_units=(4,))


def variables_of(model, *layers):
    return [v for name in layers for v in model.get_layer(name).trainable_variables]


def test_head_without_a_loss_keeps_its_weights_while_the_others_train():
    model = build()
    # Weight decay moves any variable handed to the optimizer, even with a zero gradient.
    model.compile(optimizer=keras.optimizers.SGD(0.5, weight_decay=0.1), gradient_projection="pcgrad",
                  loss={"zeta": "binary_crossentropy", "alpha": None, "mid": "binary_crossentropy"},
                  jit_compile=False)
    untrained = variables_of(model, "alpha_tower_0", "alpha")
    trained = variables_of(model, "zeta_tower_0", "zeta", "bottom_0")
    before = [np.array(v) for v in untrained + trained]
    x, y = data()
    history = model.fit(x, {t: y[t] for t in ("zeta", "mid")}, epochs=1, batch_size=16, verbose=0).history
    after = [np.array(v) for v in untrained + trained]
    for b, a in zip(before[:len(untrained)], after[:len(untrained)]):
        np.testing.assert_array_equal(a, b)
    assert all(np.abs(a - b).max() > 0 for a, b in zip(before[len(untrained):], after[len(untrained):]))
    assert "alpha_loss" not in history and "zeta_loss" in history


def _trained_weights(loss):
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=loss, jit_compile=False)
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    return [np.array(v) for v in model.weights], model.evaluate(x, y, verbose=0, return_dict=True)


def test_loss_in_every_form_keras_takes_for_several_outputs():
    # Mutations caught: the single loss given to one task only, or the list zipped with
    # sorted task names (TASKS is not sorted) -> the weights or the logged task losses differ.
    by_task = {"zeta": "binary_crossentropy", "alpha": "mse", "mid": "binary_crossentropy"}
    want, logs = _trained_weights(by_task)
    got, list_logs = _trained_weights([by_task[t] for t in TASKS])
    for a, b in zip(want, got):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert list_logs["alpha_loss"] == pytest.approx(logs["alpha_loss"], rel=1e-5)
    single, single_logs = _trained_weights(keras.losses.BinaryCrossentropy())
    every, every_logs = _trained_weights({t: "binary_crossentropy" for t in TASKS})
    for a, b in zip(single, every):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert {k: single_logs[k] for k in ("zeta_loss", "alpha_loss", "mid_loss")} == pytest.approx(
        {k: every_logs[k] for k in ("zeta_loss", "alpha_loss", "mid_loss")}, rel=1e-5)
    with pytest.raises(ValueError, match=r"`loss` as a list must have one entry per task .* got 2"):
        build().compile(loss=["mse", "mse"])
    with pytest.raises(ValueError, match=r"`loss` must be given"):
        build().compile()


def test_outputs_are_a_dict_in_task_order_each_key_its_own_head():
    model = build()
    x, _ = data()
    assert model.task_names == TASKS
    for outputs in (model(x), model.predict(x, verbose=0)):
        assert list(outputs) == list(TASKS)
    # Each key is its head: the tower and head of that task on the shared bottom's output.
    bottom = model.get_layer("bottom_0")(x)
    predicted = model.predict(x, verbose=0)
    for task in TASKS:
        want = model.get_layer(task)(model.get_layer(f"{task}_tower_0")(bottom))
        np.testing.assert_allclose(predicted[task], np.asarray(want), atol=1e-6)


class NotCompilable(keras.layers.Layer):
    """A layer that says XLA cannot compile it (as Keras 3's lookups and hashing do)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_jit = False  # after Keras 3's Layer.__init__, which sets it True

    def call(self, inputs):
        return inputs


@pytest.fixture
def bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_xla_by_default_and_as_the_user_asks():
    model = expert_model()
    assert step_lib.resolve_jit_compile(model, "auto") is True
    assert step_lib.resolve_jit_compile(model, None) is True  # tf_keras's "unset"
    assert step_lib.resolve_jit_compile(model, False) is False
    assert step_lib.resolve_jit_compile(model, True) is True


def test_xla_off_under_a_distribution_strategy():
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = expert_model()
        assert step_lib.resolve_jit_compile(model, "auto") is False
    assert model.distribute_strategy is not None


def test_xla_off_when_eager_or_deterministic(monkeypatch):
    model = expert_model()
    assert step_lib.resolve_jit_compile(model, "auto", run_eagerly=True) is False
    monkeypatch.setattr(step_lib, "op_determinism_enabled", lambda: True)
    assert step_lib.resolve_jit_compile(model, "auto") is False


def test_xla_off_with_bfloat16_layers(bfloat16):
    assert step_lib.resolve_jit_compile(expert_model(), "auto") is False


def test_xla_off_with_a_layer_xla_cannot_compile():
    keras.utils.set_random_seed(8)
    inputs = keras.Input((6,), name="x")
    model = models.mmoe(inputs, ["a", "b"], num_experts=2, expert_units=(4,), tower_units=(2,))
    assert step_lib.resolve_jit_compile(model, "auto") is True
    wrapped = keras.Model(inputs, NotCompilable()(inputs))
    assert step_lib.resolve_jit_compile(wrapped, "auto") is False
    if not IS_KERAS3:  # tf_keras has no supports_jit flag: its preprocessing layers count as not compilable
        normalized = keras.Model(inputs, keras.layers.Normalization(mean=0.0, variance=1.0)(inputs))
        assert step_lib.resolve_jit_compile(normalized, "auto") is False


def test_no_xla_for_a_model_of_dense_layers_alone():
    """A Shared-Bottom (dense layers and the recorded representation) trains without XLA,
    which had nothing to fuse there (docs/benchmarks.md, "Shared-Bottom without XLA"); one layer
    of another kind, or an expert model, brings XLA back, and the user's choice stands."""
    inputs = keras.Input((6,), name="x")
    model = models.shared_bottom(inputs, ["a", "b"], bottom_units=(4,), tower_units=(2,))
    assert step_lib.resolve_jit_compile(model, "auto") is False
    assert step_lib.resolve_jit_compile(model, True) is True
    model.compile(optimizer="adam", loss="mse")
    assert model.jit_compile is False
    hidden = keras.layers.Concatenate()([keras.layers.Dense(3)(inputs), inputs])
    plain = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Activation("relu")(hidden)))
    assert step_lib.resolve_jit_compile(plain, "auto") is False
    normalized = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.LayerNormalization()(inputs)))
    assert step_lib.resolve_jit_compile(normalized, "auto") is True
    assert step_lib.resolve_jit_compile(models.mmoe(inputs, ["a", "b"], num_experts=2), "auto") is True
    # A Sequential inside passes tensors on too; a subclassed model's own call() may not.
    stacked = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    assert step_lib.resolve_jit_compile(keras.Model(inputs, stacked(inputs)), "auto") is False
    assert step_lib.resolve_jit_compile(Gated(), "auto") is True


class Gated(keras.Model):
    """Dense layers alone, and elementwise work of its own in call(): XLA has that to fuse."""

    def __init__(self):
        super().__init__()
        self.value, self.gate = keras.layers.Dense(3), keras.layers.Dense(3)

    def call(self, x):
        return self.value(x) * tf.sigmoid(self.gate(x))
