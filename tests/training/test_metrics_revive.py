"""Compiled metrics revive from every save format a Keras user takes, under both Kerases.

Each case compiles one metric layout (every identifier of the issue appears in at
least one) and goes through one format: the revived model predicts the same,
evaluates to the same metric names and values, and one more epoch reaches the
weights of an uninterrupted run.
"""

import numpy as np
import pytest

from mtl_keras.backend import IS_KERAS3, keras, tf
from mtl_keras.model import MultiTaskModel

TASKS = ("ctr", "cvr")

LAYOUTS = {
    # Per-task dict: names as either Keras spells them, a lone string, an object with arguments.
    "per_task": lambda: {
        "ctr": ["auc", "AUC", "accuracy", "precision", "recall",
                keras.metrics.AUC(curve="PR", name="pr_auc")],
        "cvr": "binary_accuracy",
    },
    # One list for every head: regression names, Keras's own function, an object.
    "one_list": lambda: ["mse", "mae", "acc", keras.metrics.mean_absolute_error,
                         keras.metrics.Precision(thresholds=0.3, name="p30")],
    # Keras 3's nested list, one entry per head in task order.
    "nested": lambda: [["Recall", "binary_accuracy"], None],
}
# What each layout logs besides the losses.
LOGGED = {
    "per_task": ["ctr_auc", "ctr_AUC", "ctr_accuracy", "ctr_precision", "ctr_recall", "ctr_pr_auc",
                 "cvr_binary_accuracy"],
    "one_list": [f"{t}_{m}" for t in TASKS for m in ("mse", "mae", "acc", "mean_absolute_error", "p30")],
    "nested": ["ctr_Recall", "ctr_binary_accuracy"],
}

if IS_KERAS3:
    FORMATS = ("keras", "model_checkpoint", "tf_checkpoint")
else:
    FORMATS = ("saved_model", "keras", "model_checkpoint", "tf_checkpoint")


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] + x[:, :1] > 0.5).astype("float32")}
    return x, y


def compiled(layout):
    keras.utils.set_random_seed(3)
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(4, activation="relu")(x)
    model = MultiTaskModel(x, {t: keras.layers.Dense(1, activation="sigmoid", name=t)(h) for t in TASKS})
    # No XLA: the round trip, not the compiler, is under test, and it compiles in a fraction.
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss={t: "binary_crossentropy" for t in TASKS},
                  metrics=LAYOUTS[layout](), jit_compile=False)
    return model


def fit(model, **kwargs):
    x, y = data()
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, **kwargs)


def weights(model):
    return [np.array(v) for v in model.trainable_variables]


@pytest.fixture(scope="module")
def uninterrupted():
    model = compiled("per_task")
    fit(model)
    fit(model)
    return weights(model)


def revive(model, layout, fmt, tmp_path):
    """Trains ``model`` one epoch, saves it in ``fmt`` and returns the revived model."""
    if fmt == "model_checkpoint":
        path = str(tmp_path / ("ckpt.keras" if IS_KERAS3 else "ckpt"))  # tf_keras: a SavedModel
        fit(model, callbacks=[keras.callbacks.ModelCheckpoint(path)])
        return keras.models.load_model(path)
    fit(model)
    if fmt == "tf_checkpoint":
        path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
        restored = compiled(layout)
        tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
        return restored
    path = str(tmp_path / ("m.keras" if fmt == "keras" else "saved_model"))
    model.save(path)
    return keras.models.load_model(path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_compiled_metrics_revive(layout, fmt, tmp_path, uninterrupted):
    x, y = data()
    model = compiled(layout)
    loaded = revive(model, layout, fmt, tmp_path)
    for task in TASKS:
        np.testing.assert_allclose(loaded(x)[task], model(x)[task], atol=1e-6)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert model.metrics_names == ["loss", "ctr_loss", "cvr_loss"] + LOGGED[layout]
    assert loaded.metrics_names == model.metrics_names
    assert set(got) == set(expected) == set(model.metrics_names)
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-5, atol=1e-6)
    fit(loaded)
    for left, right in zip(weights(loaded), uninterrupted):
        np.testing.assert_allclose(left, right, rtol=1e-5, atol=1e-6)


def test_unknown_metric_names_the_task():
    with pytest.raises(ValueError, match=r"`metrics` for task 'cvr': unknown metric 'aucc'"):
        compiled_with({"cvr": ["aucc"]})
    with pytest.raises(ValueError, match=r"one entry per head, in the order \['ctr', 'cvr'\]; got 1"):
        compiled_with([["auc"]])


def compiled_with(metrics):
    x = keras.Input((4,), name="x")
    model = MultiTaskModel(x, {t: keras.layers.Dense(1, activation="sigmoid", name=t)(x) for t in TASKS})
    model.compile(loss={t: "binary_crossentropy" for t in TASKS}, metrics=metrics)
    return model
