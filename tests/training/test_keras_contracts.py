"""Keras's contracts for evaluate and History, and short errors for string data that Keras
would reject with messages naming no task or feature (NumPy and tf.data alike)."""

import numpy as np
import pytest

from mtl_keras.backend import keras, tf
from mtl_keras.model import MultiTaskModel

TASKS = ("ctr", "cvr")
N = 8


def compiled():
    user = keras.Input((1,), name="user_id", dtype="int64")
    dense = keras.Input((2,), name="x")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(10, 3)(user))
    h = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([embedded, dense]))
    model = MultiTaskModel({"user_id": user, "x": dense},
                           {t: keras.layers.Dense(1, activation="sigmoid", name=t)(h) for t in TASKS})
    # Every training-only log: the task weights, a gradient cosine, the skipped-step count.
    model.compile(loss={t: "binary_crossentropy" for t in TASKS}, metrics={"ctr": ["auc"]},
                  log_gradient_cosine=True, skip_nonfinite_steps=True, jit_compile=False)
    return model


def data():
    rng = np.random.default_rng(0)
    x = {"user_id": rng.integers(0, 10, (N, 1)), "x": rng.normal(size=(N, 2)).astype("float32")}
    return x, {t: (rng.random((N, 1)) > 0.5).astype("float32") for t in TASKS}


TRAINING_ONLY = {"ctr_weight", "cvr_weight", "grad_cosine/ctr__cvr", "nonfinite_steps"}


def test_evaluate_matches_metrics_names_and_validation_logs_evaluation_only():
    x, y = data()
    model = compiled()
    history = model.fit(x, y, validation_data=(x, y), epochs=1, batch_size=4, verbose=0).history
    assert TRAINING_ONLY <= set(history)
    assert {"val_" + name for name in TRAINING_ONLY}.isdisjoint(history)
    values = model.evaluate(x, y, verbose=0)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert model.metrics_names == ["loss", "ctr_loss", "cvr_loss", "ctr_auc"]
    assert len(values) == len(model.metrics_names)
    assert dict(zip(model.metrics_names, values)) == pytest.approx(logs)
    assert {"val_" + name for name in model.metrics_names} == {k for k in history if k.startswith("val_")}


def string_labels(x, y):
    return x, dict(y, ctr=np.array([["1"]] * N))


def string_ids(x, y):
    return dict(x, user_id=np.array([["u1"]] * N)), y


LABEL_ERROR = (r"^`y\['ctr'\]` must hold numbers \(float, int or bool labels, NaN where missing\); "
               r"got strings \(dtype (str\d+|string)\)\. Map the labels to numbers first\.$")
ID_ERROR = (r"^Feature 'user_id' expects int64 values; got strings \(dtype (str\d+|string)\)\. Map the ids "
            r"to integers first")


@pytest.mark.parametrize("source", ["numpy", "tf.data", "validation_data"])
@pytest.mark.parametrize("bad, message", [(string_labels, LABEL_ERROR), (string_ids, ID_ERROR)],
                         ids=["label", "id"])
def test_string_data_fails_naming_the_task_or_feature(source, bad, message):
    model = compiled()
    x, y = data()
    bad_x, bad_y = bad(x, y)
    with pytest.raises(ValueError, match=message) as error:
        if source == "numpy":
            model.fit(bad_x, bad_y, verbose=0)
        elif source == "tf.data":
            model.fit(tf.data.Dataset.from_tensor_slices((bad_x, bad_y)).batch(4), verbose=0)
        else:
            model.fit(x, y, validation_data=(bad_x, bad_y), verbose=0)
    assert len(str(error.value)) < 200
    # Raised before a step ran: the model has not trained.
    assert int(model.training_state.step) == 0


def test_numbers_for_a_string_input_name_the_feature():
    words = keras.Input((1,), name="word", dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["a", "b"])(words)
    h = keras.layers.Flatten()(keras.layers.Embedding(3, 2)(ids))
    model = MultiTaskModel(words, {"ctr": keras.layers.Dense(1, activation="sigmoid", name="ctr")(h)})
    model.compile(loss={"ctr": "binary_crossentropy"}, jit_compile=False)
    with pytest.raises(ValueError, match=r"^Feature 'word' expects strings; got dtype int64\.$"):
        model.predict(np.zeros((2, 1), "int64"), verbose=0)
