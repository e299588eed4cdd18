"""FAMO, RLW, GLS, STCH, IMTL-L and ExcessMTL in ``fit``: MirroredStrategy on two logical CPUs
equals one device, a `.keras` save -> load -> continue equals the uninterrupted run, and each
trains census-income and the synthetic tasks as well as equal weights."""

import os
import textwrap

import numpy as np
import pytest

from mtl_keras import datasets, losses, models
from mtl_keras.backend import keras
from mtl_keras.evaluation import log_loss

from conftest import run_tensorflow_script

# Hyper-parameters that make each method's state move within a few steps.
METHODS = {
    "famo": ["FAMO", {"w_lr": 0.1}],
    "rlw": ["RandomLossWeighting", {"seed": 5}],
    "gls": ["GeometricLossWeighting", {}],
    "stch": ["SmoothTchebycheff", {"mu": 0.5, "warmup_epochs": 1}],
    "imtl_l": ["IMTLLossScaling", {}],
    "excess_mtl": ["ExcessMTL", {"robust_step_size": 0.1}],
}


# CI runs the methods whose state is hardest to carry (FAMO's logits from the loss decrease, STCH's
# warm-up epochs, ExcessMTL's accumulated gradients across replicas); the others are slow cases.
SLOW = {"gls", "imtl_l", "rlw"}


def make(name):
    class_name, kwargs = METHODS[name]
    return getattr(losses, class_name)(**kwargs)


TASKS = ("ctr", "cvr")


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype("float32")
    return x, {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] - x[:, :1] > 0.3).astype("float32")}


def compiled(name):
    """A tiny MMoE compiled with the method (no XLA: MirroredStrategy runs without it)."""
    keras.utils.set_random_seed(7)
    model = models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=3, expert_units=(8,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss={t: "binary_crossentropy" for t in TASKS},
                  task_weighting=make(name), jit_compile=False)
    return model


def fit(model, epochs):
    """3 steps an epoch; the loss and every ``<task>_weight`` logged."""
    x, y = data()
    history = model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0).history
    return {k: v for k, v in history.items() if k == "loss" or k.endswith("_weight")}


def snapshot(model):
    """Weights, the weighting's state and the optimizer's variables, by position."""
    values = [np.array(v) for v in model.trainable_variables]
    values += [np.array(v, np.float64) for v in model.training_state.weighting.state_variables.values()]
    return values + [np.array(v) for v in model.optimizer.variables]


# Two logical CPUs must be configured before TensorFlow starts: a fresh interpreter runs every
# method under MirroredStrategy (paying TensorFlow's start-up once, as tests/training/test_distribute.py
# does) and saves what it ends with.
SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path[:0] = [sys.argv[2], sys.argv[2].rsplit("/", 1)[0]]  # this module, and tests/ for conftest
    import test_weighting_training as here
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    results = {}
    for name in sys.argv[3:]:
        with mirrored.scope():
            model = here.compiled(name)
        logs = here.fit(model, 2)
        for i, value in enumerate(here.snapshot(model)):
            results[f"{name}/state/{i}"] = value
        for key, value in logs.items():
            results[f"{name}/logs/{key}"] = np.array(value)
    np.savez(sys.argv[1], **results)
    """
)


@pytest.fixture(scope="module")
def mirrored(request, tmp_path_factory):
    """{method: (snapshot, logs)} after 2 epochs under MirroredStrategy on two logical CPUs, for
    the methods of this session's cases."""
    names = sorted({item.callspec.params["name"] for item in request.session.items
                    if item.originalname == "test_mirrored_and_resumed_runs_equal_one_device"})
    path = str(tmp_path_factory.mktemp("mirrored") / "runs.npz")
    result = run_tensorflow_script(SCRIPT, path, os.path.dirname(os.path.abspath(__file__)), *names)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    saved = dict(np.load(path))
    runs = {}
    for name in names:
        state = [saved[f"{name}/state/{i}"] for i in range(len([k for k in saved if k.startswith(f"{name}/state/")]))]
        logs = {k.split("/", 2)[2]: v for k, v in saved.items() if k.startswith(f"{name}/logs/")}
        runs[name] = state, logs
    return runs


def assert_same(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in sorted(METHODS)]
)
def test_mirrored_and_resumed_runs_equal_one_device(name, tmp_path, mirrored):
    """One device, 2 epochs in one go (saved after the first) is the reference: MirroredStrategy
    with two replicas and a `.keras` file loaded after epoch 1 and trained on both equal it."""
    model = compiled(name)
    first = fit(model, 1)
    path = str(tmp_path / "model.keras")
    model.save(path)
    second = fit(model, 1)
    reference = snapshot(model)
    logs = {k: np.array(first[k] + second[k]) for k in first}

    state, mirrored_logs = mirrored[name]
    assert_same(state, reference)
    assert sorted(mirrored_logs) == sorted(logs) == ["ctr_weight", "cvr_weight", "loss"]
    assert_same([mirrored_logs[k] for k in sorted(logs)], [logs[k] for k in sorted(logs)])

    loaded = keras.models.load_model(path)
    assert type(loaded.training_state.weighting) is type(model.training_state.weighting)
    assert loaded.training_state.weighting.get_config() == model.training_state.weighting.get_config()
    resumed = fit(loaded, 1)
    assert_same(snapshot(loaded), reference)
    assert_same([np.array(resumed[k]) for k in sorted(logs)], [logs[k][1:] for k in sorted(logs)])


def each_method(build, optimizer, **compile_args):
    """(name, model) for equal weights and then each method with its defaults, built alike from seed 0
    (``optimizer``: a function returning a fresh one)."""
    for name in ["equal"] + sorted(METHODS):
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(optimizer=optimizer(), task_weighting=None if name == "equal" else name, jit_compile=False,
                      **compile_args)
        yield name, model


def test_each_method_trains_census_income_as_well_as_equal_weights(census_path):
    """Census-income group 1 (the MMoE paper's), one seed, 2 epochs of MMoE with each method's
    defaults (batch 1024: half the steps of the benchmark's 512, for CI's time): the summed test
    log loss of the two tasks at most equal weights' x 1.1.

    Measured (seed 0): 0.957-1.041 x equal weights' (Keras 3), 0.972-1.032 (tf_keras); 0.993-1.013 (three
    seeds) in benchmarks/quality_census.py, which early-stops on the tasks' own validation losses. A method that does
    not train scores 0.92 (the label priors), 4x equal weights'.
    """
    data = datasets.census_income(census_path, group=1, seed=0)
    tasks = list(data.train.y)
    width = data.train.x["features"].shape[1]
    results = {}
    for name, model in each_method(lambda: models.mmoe(keras.Input((width,), name="features"), tasks),
                                   lambda: keras.optimizers.Adam(1e-3),
                                   loss={t: "binary_crossentropy" for t in tasks}):
        model.fit(data.train.x, data.train.y, batch_size=1024, epochs=2, verbose=0)
        predicted = model.predict(data.test.x, batch_size=4096, verbose=0)
        results[name] = sum(log_loss(data.test.y[t], predicted[t]) for t in tasks)
    assert all(results[name] <= 1.1 * results["equal"] for name in METHODS), results


def test_each_method_trains_the_synthetic_tasks_as_well_as_equal_weights():
    """The MMoE paper's synthetic tasks (correlation 0.5), one seed: MMoE of the benchmark's sizes
    (8 experts of 16 units, towers of 8), 30 epochs of 20,000 rows at batch 256 with Adam's rate
    decayed to zero (cosine), each method's defaults: the mean test MSE of the two tasks at most
    equal weights' x 1.1.

    A CI-sized form of the tasks: 10 input dimensions and scale 0.5 (the paper's generator,
    ``datasets.synthetic_tasks``, with d = 10 and c = 0.5 for its 100 and 1) are smooth enough for
    every run to end near the noise floor (MSE 0.01), so one seed measures the method and not the
    minimum it lands in. At the paper's d = 100 and c = 1 one seed is no measure at this size: with
    20,000 rows the ratios moved over 0.44-1.78 with the seed, and at d = 10, c = 1 RLW's 1.20 on
    seed 4 became 1.01 without XLA (the same run, other rounding). docs/benchmarks.md has the paper's
    size, five seeds, until converged, from benchmarks/quality_synthetic.py --weightings.

    Measured: seeds 0-5 0.60-1.009 x equal weights' (Keras 3), seeds 0, 2, 4 0.87-1.017 (tf_keras);
    seed 0 0.987-1.005. A method that leaves a task untrained fails it by far: GLS with the second
    task's weight zeroed scored 0.92, 87x equal weights'.
    """
    rows, test_rows, batch_size, epochs = 20000, 5000, 256, 30
    x, y = datasets.synthetic_tasks(rows + test_rows, 0.5, dim=10, scale=0.5, seed=0)
    tasks = list(y)
    results = {}
    decay = keras.optimizers.schedules.CosineDecay(1e-2, epochs * -(-rows // batch_size))

    def build():
        return models.mmoe(keras.Input((10,), name="features"), tasks, num_experts=8, expert_units=(16,),
                           tower_units=(8,), task_types="regression")

    for name, model in each_method(build, lambda: keras.optimizers.Adam(decay), loss={t: "mse" for t in tasks},
                                   steps_per_execution=32):
        model.fit(x[:rows], {t: v[:rows] for t, v in y.items()}, batch_size=batch_size, epochs=epochs, verbose=0)
        predicted = model.predict(x[rows:], batch_size=4096, verbose=0)
        results[name] = float(np.mean([np.mean((predicted[t] - y[t][rows:]) ** 2) for t in tasks]))
    assert all(results[name] <= 1.1 * results["equal"] for name in METHODS), results
