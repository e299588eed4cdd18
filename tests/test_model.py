import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import BCE, click_data, save_and_load, two_tower_model, weights_of
from mtl_keras import MultiTaskModel, models
from mtl_keras.backend import keras, tf

def np_bce(y, p):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


def test_missing_labels_are_masked_out_of_the_loss():
    model = two_tower_model()
    model.compile(optimizer="adam", loss=BCE, metrics={"ctr": ["auc"]})
    x, y = click_data()
    rng = np.random.default_rng(1)
    missing = rng.random(len(x)) < 0.3
    y["ctr"][missing] = np.nan
    scores = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    predictions = model.predict(x, verbose=0)
    labelled = ~missing
    assert np.isfinite(scores["loss"])
    assert scores["ctr_loss"] == pytest.approx(np_bce(y["ctr"][labelled], predictions["ctr"][labelled]), abs=1e-5)
    assert scores["cvr_loss"] == pytest.approx(np_bce(y["cvr"], predictions["cvr"]), abs=1e-5)
    auc = keras.metrics.AUC()
    auc.update_state(y["ctr"][labelled], predictions["ctr"][labelled])
    assert scores["ctr_auc"] == pytest.approx(float(auc.result()), abs=1e-6)
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert {"loss", "ctr_loss", "cvr_loss", "ctr_weight", "cvr_weight", "ctr_auc"} <= set(history.history)


def test_a_batch_without_labels_gives_zero_loss_and_zero_gradient():
    model = two_tower_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=BCE)
    x, y = click_data(n=32)
    y["cvr"][:] = np.nan
    tower = model.get_layer("cvr_tower")
    head = model.get_layer("cvr")
    before = [np.array(v) for v in tower.trainable_variables + head.trainable_variables]
    shared_before = np.array(model.get_layer("shared").kernel)
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert history.history["cvr_loss"] == [0.0]
    for old, var in zip(before, tower.trainable_variables + head.trainable_variables):
        np.testing.assert_array_equal(np.array(var), old)
    assert not np.allclose(np.array(model.get_layer("shared").kernel), shared_before)


def test_static_weights_change_the_gradient_as_the_weighted_sum():
    task_weights = {"ctr": 0.3, "cvr": 2.0}
    model = two_tower_model()
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=BCE, task_weighting=task_weights)
    x, y = click_data(n=64)
    start = weights_of(model)
    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        bce = keras.losses.BinaryCrossentropy()
        loss = sum(w * bce(y[t], pred[t]) for t, w in task_weights.items())
    expected_step = tape.gradient(loss, model.trainable_variables)
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False)
    for old, grad, var in zip(start, expected_step, model.trainable_variables):
        np.testing.assert_allclose(np.array(var), old - np.array(grad), atol=1e-5)
    assert history.history["ctr_weight"] == [pytest.approx(0.3)]
    assert history.history["cvr_weight"] == [pytest.approx(2.0)]
    assert history.history["loss"][0] == pytest.approx(float(loss), abs=1e-5)


def test_sample_weight_zero_counts_in_the_batch_a_missing_label_does_not():
    # Keras's "sum_over_batch_size": a row of weight 0 counts in the denominator; a NaN label
    # is masked out of it (training.labels), so the two differ by the labelled fraction.
    model = two_tower_model()
    model.compile(loss=BCE)
    x, y = click_data(n=50)
    weight = np.ones(len(x), "float32")
    weight[:20] = 0.0
    masked = {t: v.copy() for t, v in y.items()}
    for t in masked:
        masked[t][:20] = np.nan
    a = model.evaluate(x, y, sample_weight=weight, batch_size=50, verbose=0, return_dict=True)
    b = model.evaluate(x, masked, batch_size=50, verbose=0, return_dict=True)
    assert a["ctr_loss"] == pytest.approx(b["ctr_loss"] * 30 / 50, abs=1e-6)
    assert a["cvr_loss"] == pytest.approx(b["cvr_loss"] * 30 / 50, abs=1e-6)


def test_head_without_loss_is_predicted_not_trained():
    model = two_tower_model()
    model.compile(loss={"ctr": "binary_crossentropy", "cvr": None})
    x, y = click_data(n=40)
    history = model.fit(x, {"ctr": y["ctr"]}, epochs=1, verbose=0)
    assert "cvr_loss" not in history.history
    assert set(model.predict(x, verbose=0)) == {"ctr", "cvr"}


def test_shared_variables_are_those_reached_by_two_tasks():
    model = two_tower_model()
    shared_layer = model.get_layer("shared")
    assert {id(v) for v in model.shared_variables} == {id(v) for v in shared_layer.trainable_variables}

    mmoe = models.mmoe(keras.Input((5,), name="x"), ["a", "b"], num_experts=3)
    experts = mmoe.get_layer("mmoe").experts
    assert {id(v) for v in mmoe.shared_variables} == {id(v) for v in experts.trainable_variables}

    ple = models.ple(keras.Input((5,), name="x"), ["a", "b"], num_levels=2)
    level_0, level_1 = ple.get_layer("ple").levels
    # Level 0's task experts also feed its shared gate, hence the next level of both tasks.
    expected = (
        [v for s in level_0.task_experts for v in s.trainable_variables]
        + level_0.shared_experts.trainable_variables
        + level_0.shared_gate_kernels
        + level_0.shared_gate_biases
        + level_1.shared_experts.trainable_variables
    )
    assert {id(v) for v in ple.shared_variables} == {id(v) for v in expected}


def test_predict_and_call_return_dicts_in_task_order():
    x = keras.Input((3,), name="x")
    h = keras.layers.Dense(4)(x)
    model = MultiTaskModel(x, {"z": keras.layers.Dense(1, name="z")(h), "a": keras.layers.Dense(2, name="a")(h)})
    assert model.task_names == ("z", "a")
    out = model.predict(np.zeros((5, 3), "float32"), verbose=0)
    assert out["z"].shape == (5, 1) and out["a"].shape == (5, 2)


def test_compiled_model_round_trips_through_a_keras_file(tmp_path):
    model = two_tower_model()
    model.compile(optimizer="adam", loss=BCE, metrics={"ctr": ["auc"]}, task_weighting={"cvr": 0.5})
    x, y = click_data()
    model.fit(x, y, epochs=1, verbose=0)
    loaded = save_and_load(model, tmp_path)
    assert isinstance(loaded, MultiTaskModel)
    assert loaded.task_names == model.task_names
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == pytest.approx(before[key], abs=1e-5)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["cvr"], model.predict(x, verbose=0)["cvr"], atol=1e-6)
    loaded.fit(x, y, epochs=1, verbose=0)


def test_jit_compiled_step_matches_the_plain_step():
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(7)
        model = two_tower_model()
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, jit_compile=jit)
        x, y = click_data(n=64)
        y["ctr"][::4] = np.nan
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
        results.append(weights_of(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    "options",
    [{}, {"gradient_projection": "pcgrad"}, {"gradient_projection": "mgda", "projection_mode": "fast"},
     {"task_weighting": "gradnorm"}, {"log_gradient_cosine": True}],
    ids=["plain", "exact", "fast", "gradnorm", "cosine"],
)
def test_xla_is_the_default_for_every_step_and_can_be_refused(options):
    model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, **options)
    assert model.jit_compile is True
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, jit_compile=False, **options)
    assert model.jit_compile is False
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, run_eagerly=True, **options)
    assert not model.jit_compile


def test_tf_keras_traces_the_step_without_autograph_failures():
    """tf_keras traces train_step with AutoGraph; a method it cannot convert logs a warning
    (once per process, hence a fresh one) and runs unconverted."""
    code = (
        "import numpy as np\n"
        "from mtl_keras import models\n"
        "from mtl_keras.backend import keras\n"
        "m = models.mmoe(keras.Input((6,), name='x'), ['a', 'b'], num_experts=2)\n"
        "m.compile(optimizer='sgd', loss={'a': 'binary_crossentropy', 'b': 'binary_crossentropy'})\n"
        "x = np.random.rand(32, 6).astype('float32')\n"
        "m.fit(x, {'a': x[:, :1] > .5, 'b': x[:, 1:2] > .5}, epochs=1, verbose=0)\n"
        "print('trained')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_USE_LEGACY_KERAS="1"))
    assert "trained" in done.stdout, done.stderr[-2000:]
    assert "AutoGraph could not transform" not in done.stderr


class TestBadInput:
    def compiled(self, **kwargs):
        model = two_tower_model()
        model.compile(loss=BCE, **kwargs)
        return model

    def test_outputs_must_be_a_task_dict(self):
        x = keras.Input((3,), name="x")
        with pytest.raises(ValueError, match="`outputs` must be a non-empty dict"):
            MultiTaskModel(x, keras.layers.Dense(1)(x))

    def test_unknown_task_in_loss(self):
        with pytest.raises(ValueError, match=r"`loss` names unknown task\(s\) \['ctcvr'\]"):
            two_tower_model().compile(loss=dict(BCE, ctcvr="mse"))

    def test_task_without_loss(self):
        with pytest.raises(ValueError, match=r"`loss` has no entry for task\(s\) \['cvr'\]"):
            two_tower_model().compile(loss={"ctr": "binary_crossentropy"})

    def test_unknown_loss_name(self):
        with pytest.raises(ValueError, match="unknown loss"):
            two_tower_model().compile(loss=dict(BCE, cvr="no_such_loss"))

    def test_unknown_task_in_metrics(self):
        with pytest.raises(ValueError, match=r"`metrics` names unknown task\(s\) \['like'\]"):
            two_tower_model().compile(loss=BCE, metrics={"like": ["auc"]})

    def test_unknown_static_weight_task(self):
        with pytest.raises(ValueError, match=r"unknown task\(s\) \['like'\]"):
            two_tower_model().compile(loss=BCE, task_weighting={"like": 1.0})

    def test_bad_task_weighting(self):
        with pytest.raises(ValueError, match=r"`task_weighting` 'uncertain' is not a known TaskWeighting; expected one of \['dwa', 'equal', 'excess_mtl', 'famo', 'gls', 'gradnorm', 'imtl_l', 'rlw', 'stch', 'uncertainty'\]"):
            two_tower_model().compile(loss=BCE, task_weighting="uncertain")
        with pytest.raises(ValueError, match="`task_weighting` must be"):
            two_tower_model().compile(loss=BCE, task_weighting=3)

    @pytest.mark.parametrize(
        "labels, match",
        [
            (lambda y: dict(y, like=y["ctr"]), r"unknown task\(s\) \['like'\]"),
            (lambda y: {"ctr": y["ctr"]}, r"`y` has no entry for task\(s\) \['cvr'\]"),
            (lambda y: dict(y, cvr=np.zeros((len(y["cvr"]), 3), "float32")), r"y\['cvr'\]` must have shape"),
            (lambda y: y["ctr"], "`y` must be a dict"),
        ],
    )
    def test_bad_labels_fail_before_training(self, labels, match):
        model = self.compiled(optimizer=keras.optimizers.SGD(0.1))
        x, y = click_data(n=32)
        start = weights_of(model)
        with pytest.raises(ValueError, match=match):
            model.fit(x, labels(y), epochs=1, verbose=0)
        for old, var in zip(start, model.trainable_variables):
            np.testing.assert_array_equal(np.array(var), old)
