"""Training state (weighting and projection state, group optimizers, the step) across every
save/restore path a Keras user takes, under both Kerases.

Each case pairs a weighting with a projection so that every method is covered; the
reference is an uninterrupted run from the same seed.
"""

import json

import numpy as np
import pytest

import mtl_keras
from mtl_keras import losses, models
from mtl_keras.backend import IS_KERAS3, keras, tf

CASES = {
    "uncertainty+pcgrad": lambda: dict(task_weighting="uncertainty", gradient_projection="pcgrad"),
    "gradnorm+gradvac": lambda: dict(task_weighting=losses.GradNorm(learning_rate=0.05),
                                     gradient_projection=losses.GradVac(beta=0.5)),
    "dwa+mgda": lambda: dict(task_weighting="dwa", gradient_projection="mgda"),
    "equal+cagrad": lambda: dict(gradient_projection="cagrad"),
    "uncertainty+pareto": lambda: dict(task_weighting="uncertainty",
                                       gradient_projection=losses.ParetoEfficient({"ctr": 0.2})),
}
TASKS = ("ctr", "cvr")


def cases(in_ci):
    """Every case, those not in ``in_ci`` marked slow (`make reliability` runs them)."""
    return [pytest.param(case, marks=[] if case in in_ci else [pytest.mark.slow]) for case in sorted(CASES)]


def data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] - x[:, :1] > 0.3).astype("float32")}
    return x, y


def build():
    keras.utils.set_random_seed(7)
    return models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=3, expert_units=(8,), tower_units=(4,))


def compiled(case, optimizer=None):
    model = build()
    model.compile(
        optimizer=optimizer or {"shared": keras.optimizers.Adam(0.02), "default": keras.optimizers.Adam(0.01)},
        loss={t: "binary_crossentropy" for t in TASKS},
        **CASES[case](),
    )
    return model


def fit(model, epochs, **kwargs):
    x, y = data()
    return model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, **kwargs)


def snapshot(model):
    """Weights, training state and every group optimizer's variables, by position."""
    values = [np.array(v) for v in model.trainable_variables]
    values += [np.array(v) for v in model.training_state.variables_by_key().values()]
    values += [np.array(v) for v in model.optimizer.variables]
    return values


def assert_same(a, b, tolerance=1e-6):
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_allclose(left, right, rtol=tolerance, atol=tolerance)


@pytest.fixture(scope="module")
def uninterrupted():
    """Per case: the snapshot after 3 epochs in one go."""
    cache = {}

    def get(case):
        if case not in cache:
            model = compiled(case)
            fit(model, 3)
            cache[case] = snapshot(model)
        return cache[case]

    return get


# CI: GradNorm's own optimizer with GradVac's EMA (uncertainty+pcgrad resumes from a tf.train
# checkpoint below).
@pytest.mark.parametrize("case", cases({"gradnorm+gradvac"}))
def test_keras_file_resumes_exactly(case, tmp_path, uninterrupted):
    model = compiled(case)
    fit(model, 2)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.training_state.weighting) is type(model.training_state.weighting)
    assert_same(snapshot(loaded), snapshot(model), 0)
    fit(loaded, 1)
    assert_same(snapshot(loaded), uninterrupted(case))


class Interrupt(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


# CI: DWA, whose state moves at the epoch's end, where BackupAndRestore writes.
@pytest.mark.parametrize("case", cases({"dwa+mgda"}))
def test_backup_and_restore_resumes_exactly(case, tmp_path, uninterrupted):
    backup = str(tmp_path / "backup")
    with pytest.raises(RuntimeError, match="interrupted"):
        fit(compiled(case), 3, callbacks=[keras.callbacks.BackupAndRestore(backup), Interrupt()])
    resumed = compiled(case)
    fit(resumed, 3, callbacks=[keras.callbacks.BackupAndRestore(backup)])
    assert_same(snapshot(resumed), uninterrupted(case))


def resume_from_model_checkpoint(case, tmp_path, weights_only):
    """Two epochs under ModelCheckpoint, then a fresh process's view: load what it wrote, train one more."""
    # Keras 3 writes weights to .weights.h5 (optimizer and training state included); tf_keras's
    # .h5 weights hold no optimizer slots, its TensorFlow-format checkpoint does.
    name = ("m.weights.h5" if IS_KERAS3 else "ckpt") if weights_only else "m.keras"
    path = str(tmp_path / name)
    fit(compiled(case), 2, callbacks=[keras.callbacks.ModelCheckpoint(path, save_weights_only=weights_only)])
    if weights_only:
        resumed = compiled(case)
        resumed.load_weights(path)
    else:
        resumed = keras.models.load_model(path)
    fit(resumed, 1)
    return resumed


# One weighting + projection pair per path (every pair runs through .keras and BackupAndRestore
# above); DWA is the case whose state moves at the epoch's end, before the checkpoint is written.
RESUMES = {
    "model_checkpoint_keras_file": ("dwa+mgda", lambda case, tmp: resume_from_model_checkpoint(case, tmp, False)),
    "model_checkpoint_weights": ("gradnorm+gradvac", lambda case, tmp: resume_from_model_checkpoint(case, tmp, True)),
}


def resume_from_tf_checkpoint(case, tmp_path):
    model = compiled(case)
    fit(model, 2)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    resumed = compiled(case)
    tf.train.Checkpoint(model=resumed).restore(path).assert_existing_objects_matched()
    fit(resumed, 1)
    return resumed


RESUMES["tf_train_checkpoint"] = ("uncertainty+pcgrad", resume_from_tf_checkpoint)

if not IS_KERAS3:  # Keras 3 saves only .keras files (model.save(dir) raises there)

    def resume_from_saved_model_dir(case, tmp_path):
        model = compiled(case)
        fit(model, 2)
        model.save(str(tmp_path / "savedmodel"))
        resumed = keras.models.load_model(str(tmp_path / "savedmodel"))
        fit(resumed, 1)
        return resumed

    RESUMES["tf_keras_saved_model_dir"] = ("uncertainty+pareto", resume_from_saved_model_dir)


@pytest.mark.parametrize("path", sorted(RESUMES))
def test_resumed_training_equals_the_uninterrupted_run(path, tmp_path, uninterrupted):
    case, resume = RESUMES[path]
    assert_same(snapshot(resume(case, tmp_path)), uninterrupted(case))


def test_weights_file_loads_into_a_fresh_model_for_inference(tmp_path):
    model = compiled("gradnorm+gradvac")
    fit(model, 1)
    path = str(tmp_path / "m.weights.h5")
    model.save_weights(path)
    x, _ = data()
    fresh = build()
    fresh.load_weights(path)
    for task in TASKS:
        np.testing.assert_allclose(fresh.predict(x, verbose=0)[task], model.predict(x, verbose=0)[task], atol=1e-6)
    # A compiled model takes the training state from the same file.
    again = compiled("gradnorm+gradvac")
    again.load_weights(path)
    assert_same(snapshot(again)[: len(model.trainable_variables) + 6], snapshot(model)[: len(model.trainable_variables) + 6], 0)


def test_compiling_leaves_the_weights_alone():
    model = build()
    before = [v.name for v in model.weights]
    for _ in range(2):
        model.compile(loss={t: "binary_crossentropy" for t in TASKS}, **CASES["uncertainty+pcgrad"]())
        assert [v.name for v in model.weights] == before


def test_tf_checkpoint_restores_training_state(tmp_path):
    model = compiled("gradnorm+gradvac")
    fit(model, 2)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored = compiled("gradnorm+gradvac")
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    assert np.abs(np.array(restored.training_state.projection.targets)).max() > 0
    assert_same(snapshot(restored), snapshot(model), 0)


def test_saved_model_export_of_a_compiled_model(tmp_path):
    model = compiled("dwa+mgda")
    fit(model, 1)
    x, _ = data()
    tf.saved_model.save(model, str(tmp_path / "tf"))
    if IS_KERAS3:
        model.export(str(tmp_path / "export"))
        exported = tf.saved_model.load(str(tmp_path / "export"))
        served = exported.serve(x)
        np.testing.assert_allclose(np.asarray(served["ctr"]), model.predict(x, verbose=0)["ctr"], atol=1e-6)
    else:
        model.save(str(tmp_path / "savedmodel"))
        loaded = keras.models.load_model(str(tmp_path / "savedmodel"))
        assert type(loaded.training_state.weighting).__name__ == "DynamicWeightAverage"
        assert type(loaded.training_state.projection).__name__ == "MGDA"
        np.testing.assert_allclose(loaded.predict(x, verbose=0)["ctr"], model.predict(x, verbose=0)["ctr"], atol=1e-6)


@keras.saving.register_keras_serializable(package="test_training_state")
class HalfMean(losses.GradientProjection):
    def __init__(self, factor=0.5):
        self.factor = factor

    def build(self, num_tasks, task_names=None):
        super().build(num_tasks, task_names)
        self.calls = self.add_state("calls", tf.constant(0.0))

    def coefficients(self, gram, task_losses):
        self.calls.assign_add(1.0)
        return tf.fill([gram.shape[0]], self.factor)

    def get_config(self):
        return {"factor": self.factor}


def test_user_projection_revives_with_its_state(tmp_path):
    model = build()
    model.compile(loss={t: "binary_crossentropy" for t in TASKS}, gradient_projection=HalfMean(0.25))
    fit(model, 1)
    assert float(model.training_state.projection.calls) == 4.0
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.models.load_model(str(tmp_path / "m.keras"))
    assert isinstance(loaded.training_state.projection, HalfMean)
    assert loaded.training_state.projection.factor == 0.25
    assert float(loaded.training_state.projection.calls) == 4.0


@pytest.mark.parametrize("cls", [losses.PCGrad, losses.GradVac, losses.MGDA, losses.CAGrad,
                                 losses.UncertaintyWeighting, losses.DynamicWeightAverage, losses.GradNorm])
def test_keras_serialization_round_trip(cls):
    config = keras.saving.serialize_keras_object(cls())
    json.dumps(config)
    revived = keras.saving.deserialize_keras_object(config)
    assert type(revived) is cls and revived.get_config() == cls().get_config()


def test_string_identifiers_name_the_methods():
    assert isinstance(mtl_keras.weighting.get("gradnorm"), losses.GradNorm)
    assert isinstance(mtl_keras.projection.get("pareto"), losses.ParetoEfficient)
