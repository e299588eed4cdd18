"""Per-task sample and class weights as Keras means them, against plain single-output Keras models.

The model has one tower per task and no shared variable, so each tower trained by
MultiTaskModel must match a plain Keras model of that tower trained on the same
data with the same weights: the loss each step and the weights after it.
"""

import numpy as np
import pytest

from mtl_keras.backend import keras, tf
from mtl_keras.model import MultiTaskModel

TASKS = ("ctr", "cvr")
N = 16


def data():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(N, 3)).astype("float32")
    y = {"ctr": (x[:, 0] > 0).astype("float32")[:, None], "cvr": (x[:, 1] > 0.3).astype("float32")[:, None]}
    return x, y


def towers():
    """MultiTaskModel with an unshared tower per task; SGD, one batch a step."""
    keras.utils.set_random_seed(11)
    x = keras.Input((3,), name="x")
    heads = {}
    for task in TASKS:
        h = keras.layers.Dense(2, activation="relu", name=f"{task}_hidden")(x)
        heads[task] = keras.layers.Dense(1, activation="sigmoid", name=task)(h)
    model = MultiTaskModel(x, heads)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss={t: "binary_crossentropy" for t in TASKS},
                  jit_compile=False)
    return model


def single(model, task, **compile_kwargs):
    """A plain Keras model of ``task``'s tower, starting from the same weights."""
    x = keras.Input((3,))
    hidden, head = model.get_layer(f"{task}_hidden"), model.get_layer(task)
    h = keras.layers.Dense(2, activation="relu")(x)
    plain = keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(h))
    plain.set_weights(hidden.get_weights() + head.get_weights())
    plain.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy", **compile_kwargs)
    return plain


def tower_weights(model, task):
    return model.get_layer(f"{task}_hidden").get_weights() + model.get_layer(task).get_weights()


def assert_same(left, right, tolerance=1e-5):
    for a, b in zip(left, right):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_sample_weights_and_missing_labels_follow_keras():
    x, y = data()
    rng = np.random.default_rng(0)
    weights = {"ctr": np.full(N, 2.0, "float32"), "cvr": rng.uniform(0.0, 3.0, N).astype("float32")}
    missing = np.arange(N) % 3 == 0
    masked = dict(y, cvr=np.where(missing[:, None], np.nan, y["cvr"]).astype("float32"))
    model = towers()
    # Keras: ctr with its weights on every row; cvr on the labelled rows only.
    plain = {"ctr": single(model, "ctr"), "cvr": single(model, "cvr")}
    labelled = ~missing
    # Before training: a uniform weight of 2 doubles the task's loss, as in Keras.
    unweighted = model.evaluate(x, masked, batch_size=N, verbose=0, return_dict=True)
    weighted = model.evaluate(x, masked, sample_weight={"ctr": weights["ctr"]}, batch_size=N, verbose=0,
                              return_dict=True)
    assert weighted["ctr_loss"] == pytest.approx(2 * unweighted["ctr_loss"], rel=1e-6)
    # The denominator counts the labelled rows: Keras with weight 0 on the missing rows divides
    # by the whole batch instead, a loss smaller by the labelled fraction.
    zero = plain["cvr"].evaluate(x, np.nan_to_num(masked["cvr"]), sample_weight=weights["cvr"] * labelled,
                                 batch_size=N, verbose=0)
    ours = model.evaluate(x, masked, sample_weight=weights, batch_size=N, verbose=0, return_dict=True)
    assert ours["cvr_loss"] == pytest.approx(zero * N / labelled.sum(), rel=1e-5)

    history = model.fit(x, masked, sample_weight=weights, batch_size=N, epochs=3, shuffle=False, verbose=0)
    reference = {
        "ctr": plain["ctr"].fit(x, y["ctr"], sample_weight=weights["ctr"], batch_size=N, epochs=3,
                                shuffle=False, verbose=0),
        "cvr": plain["cvr"].fit(x[labelled], y["cvr"][labelled], sample_weight=weights["cvr"][labelled],
                                batch_size=N, epochs=3, shuffle=False, verbose=0),
    }
    for task in TASKS:
        np.testing.assert_allclose(history.history[f"{task}_loss"], reference[task].history["loss"], rtol=1e-5)
        assert_same(tower_weights(model, task), plain[task].get_weights())


def test_class_weight_per_task_equals_keras_class_weight():
    x, y = data()
    class_weight = {"ctr": {0: 1.0, 1: 3.0}}
    cvr_weight = np.linspace(0.5, 2.0, N).astype("float32")
    model = towers()
    plain = {"ctr": single(model, "ctr"), "cvr": single(model, "cvr")}
    history = model.fit(x, y, class_weight=class_weight, sample_weight={"cvr": cvr_weight}, batch_size=N,
                        epochs=3, shuffle=False, verbose=0)
    reference = {
        "ctr": plain["ctr"].fit(x, y["ctr"], class_weight=class_weight["ctr"], batch_size=N, epochs=3,
                                shuffle=False, verbose=0),
        "cvr": plain["cvr"].fit(x, y["cvr"], sample_weight=cvr_weight, batch_size=N, epochs=3,
                                shuffle=False, verbose=0),
    }
    for task in TASKS:
        np.testing.assert_allclose(history.history[f"{task}_loss"], reference[task].history["loss"], rtol=1e-5)
        assert_same(tower_weights(model, task), plain[task].get_weights())
    # From a tf.data.Dataset, (x, y) and (x, y, sample_weight) alike.
    for element in ((x, y), (x, y, {"cvr": cvr_weight})):
        from_dataset = towers()
        dataset = tf.data.Dataset.from_tensor_slices(element).batch(N)
        from_dataset.fit(dataset, class_weight=class_weight, epochs=3, verbose=0)
        expected = model if len(element) == 3 else None
        if expected is None:
            expected = towers()
            expected.fit(x, y, sample_weight={"ctr": 1.0 + 2.0 * y["ctr"][:, 0]}, batch_size=N, epochs=3,
                         shuffle=False, verbose=0)
        assert_same(from_dataset.get_weights(), expected.get_weights())


def test_class_weight_errors_name_the_argument():
    x, y = data()
    model = towers()
    for bad, message in [
        ({0: 1.0, 1: 3.0}, r"`class_weight` must be a dict \{task: \{class index: weight\}\}"),
        ({"ctx": {0: 1.0}}, r"`class_weight` names unknown task\(s\) \['ctx'\]"),
        ({"ctr": {"yes": 2.0}}, r"`class_weight\['ctr'\]` keys must be class indices >= 0; got 'yes'"),
        ({"ctr": {1: "3"}}, r"`class_weight\['ctr'\]\[1\]` must be a number"),
    ]:
        with pytest.raises(ValueError, match=message):
            model.fit(x, y, class_weight=bad, verbose=0)
