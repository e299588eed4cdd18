"""Callbacks, precision and faults in the train step: learning-rate callbacks, loss scaling,
non-finite losses, Keras's loss_weights, label checks and TensorBoard."""

import glob

import numpy as np
import pytest

from mtl_keras import losses, models
from mtl_keras.backend import IS_KERAS3, keras, tf

TASKS = ("ctr", "cvr")
LOSS = {t: "binary_crossentropy" for t in TASKS}
LossScaleOptimizer = keras.optimizers.LossScaleOptimizer if IS_KERAS3 else keras.mixed_precision.LossScaleOptimizer


def data(n=64):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] > 0).astype("float32")}
    return x, y


def build():
    keras.utils.set_random_seed(5)
    return models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=2, expert_units=(4,), tower_units=(4,))


def rate(optimizer):
    return float(np.asarray(tf.convert_to_tensor(optimizer.learning_rate)))


@pytest.mark.parametrize("callback", ["scheduler", "plateau"])
def test_learning_rate_callbacks_move_every_group(callback):
    model = build()
    model.compile(optimizer={"shared": keras.optimizers.SGD(0.1), "default": keras.optimizers.SGD(0.4)}, loss=LOSS)
    hook = (
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.4 / 2 ** (epoch + 1))
        if callback == "scheduler"
        else keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=10.0)
    )
    x, y = data()
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[hook])
    (shared,) = model.training_state.optimizers
    # The scheduler halves the rate before each epoch; the plateau callback after the 2nd and 3rd.
    expected = 0.4 / 8 if callback == "scheduler" else 0.4 / 4
    assert rate(model.optimizer) == pytest.approx(expected)
    assert rate(shared) == pytest.approx(0.1 * expected / 0.4)


def test_explicit_loss_scale_optimizer_trains_as_the_plain_one():
    x, y = data()
    plain, scaled = build(), build()
    plain.compile(optimizer=keras.optimizers.SGD(0.5), loss=LOSS, gradient_projection="pcgrad")
    scaled.compile(optimizer=LossScaleOptimizer(keras.optimizers.SGD(0.5)), loss=LOSS, gradient_projection="pcgrad")
    for model in (plain, scaled):
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(plain.trainable_variables, scaled.trainable_variables):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5)


@keras.saving.register_keras_serializable(package="test_training_faults")
class ScaleSensitive(losses.GradientProjection):
    """a_t = 1 / (1 + trace K) for every task, keeping the last K it saw.

    Its combination changes when the gradients are scaled; PCGrad's, MGDA's and CAGrad's do not
    (their coefficients are the same for K and s^2 K), so only such a method shows that the Gram
    matrix itself, not just the update, is built from unscaled gradients.
    """

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        # float32: assigning a float16 Gram matrix to it fails the step.
        self.seen = self.add_state("seen", tf.zeros([num_tasks, num_tasks], tf.float32))

    def coefficients(self, gram, task_losses):
        self.seen.assign(gram)
        return tf.fill([gram.shape[0]], 1.0) / (1.0 + tf.linalg.trace(gram))


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_projection_sees_unscaled_gradients_under_a_loss_scale_optimizer(mode):
    x, y = data()
    runs = []
    for optimizer in (keras.optimizers.SGD(0.5), LossScaleOptimizer(keras.optimizers.SGD(0.5))):
        model = build()
        model.compile(optimizer=optimizer, loss=LOSS, gradient_projection=ScaleSensitive(), projection_mode=mode,
                      jit_compile=False)
        model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        runs.append(([np.array(v) for v in model.trainable_variables], np.array(model.training_state.projection.seen)))
    (plain, plain_gram), (scaled, scaled_gram) = runs
    assert np.trace(plain_gram) > 1e-4
    np.testing.assert_allclose(scaled_gram, plain_gram, rtol=1e-4, atol=1e-8)
    for a, b in zip(plain, scaled):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mixed_float16_scales_every_group(mixed_float16):
    model = build()
    model.compile(optimizer={"shared": "adam", "default": "adam"}, loss=LOSS, gradient_projection="mgda")
    assert isinstance(model.optimizer, LossScaleOptimizer)
    assert all(isinstance(o, LossScaleOptimizer) for o in model.training_state.optimizers)
    before = [np.array(v) for v in model.trainable_variables]
    x, y = data()
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    after = [np.array(v) for v in model.trainable_variables]
    assert all(np.isfinite(a).all() for a in after)
    # Every group's LossScaleOptimizer took the 8 steps (its counter of good steps moved).
    for optimizer in [model.optimizer, *model.training_state.optimizers]:
        counter = optimizer.step_counter if IS_KERAS3 else optimizer.dynamic_counter
        assert int(np.asarray(counter)) == 8
    assert any(np.abs(a - b).max() > 0 for a, b in zip(after, before))


def test_mixed_float16_projection_sees_the_float32_gram_of_unscaled_gradients(mixed_float16):
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=LOSS, gradient_projection=ScaleSensitive(), jit_compile=False)
    assert isinstance(model.optimizer, LossScaleOptimizer)
    x, y = data()
    # Independent of the step: each task's gradient on the shared variables, no loss scale.
    bce = keras.losses.BinaryCrossentropy()
    with tf.GradientTape(persistent=True) as tape:
        pred = model(x, training=True)
        task_losses = [bce(y[t], tf.cast(pred[t], tf.float32)) for t in TASKS]
    rows = np.stack([
        np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in tape.gradient(l, model.shared_variables)])
        for l in task_losses
    ])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    # float16 forward and backward passes: agreement to float16's precision, far from the
    # loss scale (2**15) or its square that scaled gradients would leave in K.
    np.testing.assert_allclose(np.array(model.training_state.projection.seen), rows @ rows.T, rtol=2e-2)


def bad_data():
    x, y = data()
    y["cvr"][20] = np.inf  # the second batch of 16; NaN would mean "missing"
    return x, y


@pytest.mark.parametrize("steps_per_execution", [1, 4])
def test_nonfinite_task_loss_stops_fit_naming_task_and_step(steps_per_execution):
    # 4 steps a call: the check runs after step 4, when both losses are NaN; the error still
    # names the task and step where it began. Mutation caught: the first non-finite step not
    # recorded (the step counter named instead) -> "task 'ctr' ... step 4".
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS, steps_per_execution=steps_per_execution)
    with pytest.raises(FloatingPointError, match=r"loss of task 'cvr' is (nan|-?inf) at training step 2 "):
        model.fit(*bad_data(), epochs=1, batch_size=16, shuffle=False, verbose=0)


def test_skip_nonfinite_steps_skips_the_update_and_counts_it():
    x, y = bad_data()
    skipping = build()
    skipping.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS, skip_nonfinite_steps=True)
    history = skipping.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    assert history.history["nonfinite_steps"] == [1.0]
    assert int(skipping.training_state.nonfinite_steps) == 1
    # The same as training on the three good batches alone.
    keep = np.r_[0:16, 32:64]
    reference = build()
    reference.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    reference.fit(x[keep], {t: v[keep] for t, v in y.items()}, epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(skipping.trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-6)


def test_loss_weights_are_a_static_weighting():
    x, y = data()
    model = build()
    model.compile(loss=LOSS, loss_weights={"cvr": 0.25})
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert history.history["cvr_weight"] == [0.25] and history.history["ctr_weight"] == [1.0]
    with pytest.raises(ValueError, match="`loss_weights` and `task_weighting` both set"):
        build().compile(loss=LOSS, loss_weights={"cvr": 0.25}, task_weighting="uncertainty")
    with pytest.raises(ValueError, match=r"`loss_weights` must be a dict \{task: float\}"):
        build().compile(loss=LOSS, loss_weights=[1.0, 0.5])


def test_string_labels_are_refused_naming_the_task():
    x, y = data()
    labels = {"ctr": y["ctr"], "cvr": np.where(y["cvr"] > 0, "yes", "no")}
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(16)
    model = build()
    model.compile(loss=LOSS)
    with pytest.raises(ValueError, match=r"`y\['cvr'\]` must hold numbers .* got strings \(dtype string\)"):
        model.fit(dataset, epochs=1, verbose=0)


def test_tensorboard_shows_the_task_scalars(tmp_path):
    x, y = data()
    model = build()
    model.compile(loss=LOSS, task_weighting="uncertainty", gradient_projection="pcgrad")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25,
              callbacks=[keras.callbacks.TensorBoard(str(tmp_path))])
    tags = set()
    for path in glob.glob(str(tmp_path / "train" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    for expected in ("epoch_loss", "epoch_ctr_loss", "epoch_cvr_weight", "epoch_grad_cosine/ctr__cvr"):
        assert expected in tags, sorted(tags)
