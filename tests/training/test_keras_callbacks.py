"""The Keras callbacks and inputs users attach, on a MultiTaskModel: EarlyStopping on a
per-task validation metric, CSVLogger, ModelCheckpoint, tf.data with per-task sample weights."""

import csv

import numpy as np
import pytest

from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.training.sharing import variable_tasks

TASKS = ("ctr", "cvr")
LOSS = {t: "binary_crossentropy" for t in TASKS}


def data(n=96):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] > 0).astype("float32")}
    return x, y


def compiled():
    keras.utils.set_random_seed(9)
    model = models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=2, expert_units=(4,), tower_units=(4,))
    model.compile(loss=LOSS, metrics={"ctr": ["auc"], "cvr": ["auc"]}, task_weighting="uncertainty",
                  gradient_projection="pcgrad")
    return model


def test_early_stopping_csv_logger_and_checkpoint_on_task_metrics(tmp_path):
    x, y = data()
    model = compiled()
    log = str(tmp_path / "log.csv")
    best = str(tmp_path / "best.keras")
    history = model.fit(
        x, y, epochs=30, batch_size=32, verbose=0, validation_split=0.25,
        callbacks=[
            keras.callbacks.EarlyStopping("val_ctr_auc", mode="max", patience=1, min_delta=1.0),
            keras.callbacks.CSVLogger(log),
            keras.callbacks.ModelCheckpoint(best, monitor="val_cvr_auc", mode="max", save_best_only=True),
        ],
    )
    # min_delta=1 makes every epoch after the first "no improvement": stop after two more.
    assert len(history.history["loss"]) == 2
    with open(log) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for column in ("ctr_loss", "cvr_weight", "ctr_auc", "val_cvr_auc", "grad_cosine/ctr__cvr"):
        assert column in rows[0], sorted(rows[0])
    restored = keras.models.load_model(best)
    assert type(restored.training_state.projection).__name__ == "PCGrad"


def test_dataset_with_per_task_sample_weights_equals_arrays():
    x, y = data()
    weights = {"ctr": np.linspace(0.0, 1.0, len(x)).astype("float32"), "cvr": np.ones(len(x), "float32")}
    from_arrays = compiled()
    from_arrays.fit(x, y, sample_weight=weights, epochs=1, batch_size=32, shuffle=False, verbose=0)
    from_dataset = compiled()
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(32)
    from_dataset.fit(dataset, epochs=1, verbose=0)
    for a, b in zip(from_arrays.trainable_variables, from_dataset.trainable_variables):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)
    # A zero weight on every ctr row leaves the variables only ctr reaches untouched.
    zero = compiled()
    reach = variable_tasks(zero, TASKS)
    tower = [v for v, tasks in zip(zero.trainable_variables, reach) if tasks == {"ctr"}]
    assert tower
    before = [np.array(v) for v in tower]
    zero.fit(x, y, sample_weight={"ctr": np.zeros(len(x), "float32"), "cvr": weights["cvr"]},
             epochs=1, batch_size=32, verbose=0)
    for v, b in zip(tower, before):
        np.testing.assert_array_equal(np.array(v), b)


def test_sample_weights_follow_kerass_reduction():
    """A task's loss is sum_i w_i l_i / B, Keras's "sum_over_batch_size": a uniform weight of 2
    doubles it, as in a single-output Keras model of the same head, and the step's gradient is
    that loss's gradient."""
    x, y = data(64)
    keras.utils.set_random_seed(9)
    model = models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=2, expert_units=(4,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=LOSS, jit_compile=False)
    weights = np.linspace(0.25, 3.0, len(x)).astype("float32")
    ones = np.ones(len(x), "float32")
    bce = keras.losses.BinaryCrossentropy(reduction="none")
    per_example = np.asarray(bce(y["ctr"], model.predict(x, verbose=0)["ctr"]), np.float64)

    def scores(ctr_weights):
        return model.evaluate(x, y, sample_weight={"ctr": ctr_weights, "cvr": ones}, batch_size=64, verbose=0,
                              return_dict=True)

    plain, doubled, weighted = scores(ones), scores(2 * ones), scores(weights)
    assert doubled["ctr_loss"] == pytest.approx(2 * plain["ctr_loss"], rel=1e-5)
    assert doubled["cvr_loss"] == pytest.approx(plain["cvr_loss"], rel=1e-6)
    assert weighted["ctr_loss"] == pytest.approx((weights * per_example).sum() / len(x), rel=1e-5)
    single = keras.Model(model.input, model.output["ctr"])
    single.compile(loss="binary_crossentropy")
    for sample_weight, got in ((weights, weighted), (2 * ones, doubled)):
        keras_loss = single.evaluate(x, y["ctr"], sample_weight=sample_weight, batch_size=64, verbose=0)
        assert got["ctr_loss"] == pytest.approx(keras_loss, rel=1e-5)
    # Training: with SGD(1) and no weighting or projection, the ctr-only variables move by
    # minus the gradient of sum_i w_i l_i / B.
    tower = [v for v, tasks in zip(model.trainable_variables, variable_tasks(model, TASKS)) if tasks == {"ctr"}]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(weights * bce(y["ctr"], model(x, training=True)["ctr"])) / len(x)
    want = [np.array(v) - np.asarray(g) for v, g in zip(tower, tape.gradient(loss, tower))]
    model.fit(x, y, sample_weight={"ctr": weights, "cvr": ones}, epochs=1, batch_size=64, shuffle=False, verbose=0)
    for v, w in zip(tower, want):
        np.testing.assert_allclose(np.array(v), w, atol=1e-5)
