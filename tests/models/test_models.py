import numpy as np
import pytest

from conftest import save_and_load
from mtl_keras import MultiTaskModel, datasets, models
from mtl_keras.backend import keras
from mtl_keras.layers import ExpertGate

BUILDERS = {
    "shared_bottom": lambda i, t, **kw: models.shared_bottom(i, t, **kw),
    "mmoe": lambda i, t, **kw: models.mmoe(i, t, **kw),
    "omoe": lambda i, t, **kw: models.mmoe(i, t, shared_gate=True, **kw),
    "ple": lambda i, t, **kw: models.ple(i, t, **kw),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builders_give_task_named_heads(name, tmp_path):
    inputs = keras.Input((7,), name="features")
    model = BUILDERS[name](inputs, ["ctr", "watch_time"], task_types={"ctr": "binary", "watch_time": "regression"})
    assert isinstance(model, MultiTaskModel)
    assert model.task_names == ("ctr", "watch_time")
    x = np.random.default_rng(0).normal(size=(9, 7)).astype("float32") * 5
    out = model.predict(x, verbose=0)
    assert out["ctr"].shape == (9, 1) and out["watch_time"].shape == (9, 1)
    assert ((out["ctr"] > 0) & (out["ctr"] < 1)).all()
    assert model.get_layer("ctr").activation.__name__ == "sigmoid"
    assert model.get_layer("watch_time").activation.__name__ == "linear"
    loaded = save_and_load(model, tmp_path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["watch_time"], out["watch_time"], atol=1e-5)


def test_dict_inputs_are_concatenated():
    inputs = {"user": keras.Input((3,), name="user"), "item": keras.Input((4,), name="item")}
    model = models.mmoe(inputs, ["a", "b"], num_experts=2)
    out = model.predict({"user": np.ones((2, 3), "float32"), "item": np.ones((2, 4), "float32")}, verbose=0)
    assert out["a"].shape == (2, 1)
    assert model.get_layer("mmoe").experts.kernels[0].shape[1] == 7


def test_omoe_has_one_gate_shared_by_all_tasks():
    model = models.mmoe(keras.Input((5,), name="x"), ["a", "b", "c"], shared_gate=True)
    gate = next(layer for layer in model.layers if isinstance(layer, ExpertGate))
    assert gate.num_tasks == 1


def test_paper_sizes_by_default():
    model = models.mmoe(keras.Input((100,), name="x"), ["a", "b"])
    layer = model.get_layer("mmoe")
    assert layer.num_experts == 8 and layer.expert_units == (16,)
    assert model.get_layer("a_tower_0").units == 8
    assert models.shared_bottom(keras.Input((100,), name="x"), ["a", "b"]).get_layer("bottom_0").units == 113


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(task_names=[]), "task_names"),
        (dict(task_names="ctr"), "task_names"),
        (dict(task_names=["a", "a"]), "task_names"),
        (dict(task_names=["a", "b"], task_types="poisson"), "task_types"),
        (dict(task_names=["a", "b"], task_types={"a": "binary"}), "task_types"),
        (dict(task_names=["a", "b"], num_experts=0), "num_experts"),
    ],
)
def test_bad_builder_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.mmoe(keras.Input((4,), name="x"), **kwargs)


def test_inputs_must_be_rank_two():
    with pytest.raises(ValueError, match=r"`inputs` must have shape \[B, D\]"):
        models.ple(keras.Input((4, 2), name="x"), ["a", "b"])


def test_mmoe_halves_validation_mse_in_five_epochs():
    """MMoE paper's synthetic tasks (p = 0.5): epoch 5's validation MSE <= half of epoch 1's."""
    x, y = datasets.synthetic_tasks(40000, 0.5, seed=0)
    n_val = 8000
    model = models.mmoe(keras.Input((100,), name="features"), list(y), task_types="regression")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={t: "mse" for t in y})
    history = model.fit(
        x[n_val:],
        {t: v[n_val:] for t, v in y.items()},
        validation_data=(x[:n_val], {t: v[:n_val] for t, v in y.items()}),
        epochs=5,
        batch_size=128,
        verbose=0,
    ).history
    for task in y:
        curve = history[f"val_{task}_loss"]
        assert curve[4] <= 0.5 * curve[0], (task, curve)
