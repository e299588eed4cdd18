"""Steps per execution chosen by ``fit`` when compile leaves it unset (training/execution.py):
several steps a call where no callback can tell, the same training as one step a call, and
Keras's setting wherever a callback, a strategy or the user needs it; under tf_keras, a
multi-step train function that traces the step once."""

import numpy as np
import pytest

from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.training.execution import AUTO_STEPS, auto_steps, current_steps

TASKS = ("ctr", "cvr")
LOSS = {t: "binary_crossentropy" for t in TASKS}


def data(n=100):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] > 0).astype("float32")}
    return x, y


def compiled(**options):
    keras.utils.set_random_seed(4)
    model = models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=2, expert_units=(4,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS, task_weighting="dwa", **options)
    return model


def y_first(y, n):
    return {t: v[:n] for t, v in y.items()}


def steps_taken(model):
    return int(np.asarray(model.training_state.step))


class StepsSeen(keras.callbacks.Callback):
    """The model's steps per execution while fit runs (epoch hooks only: it does not change them)."""

    def on_train_begin(self, logs=None):
        self.steps = current_steps(self.model)


class CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def counting_bar():
    hooks = {"on_train_batch_end": CountBatches.on_train_batch_end}
    return type("CountingBar", (keras.callbacks.ProgbarLogger,), hooks)()


def test_default_fit_runs_several_steps_a_call_and_trains_as_one_step_a_call():
    x, y = data()  # 7 batches of 16: the last execution is cut short by the data
    auto = compiled()
    single = compiled(steps_per_execution=1)
    seen = [StepsSeen(), StepsSeen()]
    histories = [
        model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, validation_data=(x[:40], y_first(y, 40)),
                  validation_batch_size=8, callbacks=[callback])
        for model, callback in zip((auto, single), seen)
    ]
    # Mutation caught: the automatic choice ignored (1 step a call) -> fails here.
    assert seen[0].steps == AUTO_STEPS and seen[1].steps == 1
    assert steps_taken(auto) == steps_taken(single) == 21
    for name in ("loss", "ctr_weight", "val_loss", "val_cvr_loss"):
        np.testing.assert_allclose(histories[0].history[name], histories[1].history[name], rtol=1e-6)
    for a, b in zip(auto.trainable_variables, single.trainable_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("callback, steps", [
    (CountBatches, 1),
    (lambda: keras.callbacks.ModelCheckpoint("unused.weights.h5", save_weights_only=True, save_freq=3), 1),
    (lambda: keras.callbacks.BackupAndRestore("unused_backup", save_freq=3), 1),
    (lambda: keras.callbacks.ModelCheckpoint("unused.weights.h5", save_weights_only=True), AUTO_STEPS),
    (lambda: keras.callbacks.EarlyStopping("loss"), AUTO_STEPS),
    (lambda: keras.callbacks.ProgbarLogger(), AUTO_STEPS),
    (lambda: type("Declared", (CountBatches,), {"batch_hooks_per_execution": True})(), AUTO_STEPS),
    # A progress bar subclass with a hook of its own is judged by it.
    (counting_bar, 1),
])
def test_callbacks_with_batch_hooks_keep_one_step_a_call(callback, steps):
    # Mutation caught: every callback taken as safe -> the batch-counting and step-saving
    # callbacks get 8 steps a call and fail.
    model = compiled()
    assert auto_steps(model, [callback()], {}) == steps


def test_a_batch_callback_sees_every_batch_and_the_functions_follow_the_change():
    x, y = data()
    model = compiled(jit_compile=False)  # each change rebuilds the functions: XLA would recompile
    validation = dict(validation_data=(x, y), validation_batch_size=10)
    counter, seen = CountBatches(), StepsSeen()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[counter], **validation)
    assert counter.batches == 7
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[seen], **validation)
    assert seen.steps == AUTO_STEPS
    # Mutation caught: the compiled functions kept across the change -> 1 step a call for
    # 8-step epochs (1 training step, 1 of 10 validation batches).
    assert steps_taken(model) == 14
    evaluated = model.evaluate(x, y, batch_size=10, verbose=0, return_dict=True)
    for task in TASKS:
        np.testing.assert_allclose(history.history[f"val_{task}_loss"][-1], evaluated[f"{task}_loss"], rtol=1e-5)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[counter])
    assert counter.batches == 14 and steps_taken(model) == 21
    # Each setting's functions are kept: a second default fit reuses its train function.
    # Mutation caught: functions dropped on each change -> a new one traced.
    functions = model._mtl_step_functions
    before = functions.get(AUTO_STEPS, (None,))[0]
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert functions.get(AUTO_STEPS, (None,))[0] is before is not None


def test_steps_per_epoch_and_validation_steps_divide_the_steps_a_call():
    x, y = data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(10).repeat()
    model = compiled(jit_compile=False)
    # Mutation caught: 8 steps a call regardless -> Keras 3 runs 16 steps in each 6-step epoch.
    seen = StepsSeen()
    model.fit(dataset, epochs=2, steps_per_epoch=6, shuffle=False, verbose=0, callbacks=[seen])
    assert seen.steps == 6 and steps_taken(model) == 12
    # Outside fit Keras's setting: mutation caught, the fit's 6 kept -> 6 batches evaluated and
    # predicted for 3.
    assert current_steps(model) == 1
    assert len(model.predict(dataset, steps=3, verbose=0)["ctr"]) == 30
    first_three = tf.data.Dataset.from_tensor_slices((x[:30], y_first(y, 30))).batch(10)
    np.testing.assert_allclose(model.evaluate(dataset, steps=3, verbose=0), model.evaluate(first_three, verbose=0),
                               rtol=1e-6)
    counts = {(30, None): 6, (33, None): 3, (1000, None): 8, (8, 3): 1, (40, 20): 5, (None, 12): 6}
    for (steps_per_epoch, validation_steps), steps in counts.items():
        arguments = {"steps_per_epoch": steps_per_epoch, "validation_steps": validation_steps}
        assert auto_steps(model, [], arguments) == steps, arguments


def test_given_steps_per_execution_strategies_and_eager_runs_keep_keras_setting():
    x, y = data()
    model = compiled(steps_per_execution=4, jit_compile=False)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[CountBatches()])
    assert current_steps(model) == 4
    assert auto_steps(compiled(run_eagerly=True), [], {}) == 1
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        distributed = compiled()
        given = compiled(steps_per_execution=4, jit_compile=False)
    assert auto_steps(distributed, [], {}) == 1
    # Given steps under a strategy run (under tf_keras through tf_keras_train_function, whose
    # steps variable is then a distributed one) as without it.
    given.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert current_steps(given) == 4 and steps_taken(given) == 7
    for a, b in zip(given.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


def test_several_steps_a_call_trace_the_train_step_once():
    """Mutation caught: tf_keras's own multi-step function (its loop's outputs undefined before
    the loop, so autograph traces the step a second time to find them) -> 2 traces."""
    x, y = data()
    model = compiled(jit_compile=False)
    traces, step = [], model.train_step
    model.train_step = lambda batch: traces.append(1) or step(batch)
    seen = StepsSeen()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[seen])
    assert seen.steps == AUTO_STEPS and len(traces) == 1 and steps_taken(model) == 14
