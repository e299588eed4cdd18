"""The SNR, STAR, ESMM and cross-stitch builders."""

import numpy as np
import pytest

from conftest import BCE, click_data, save_and_load
from mtl_keras import MultiTaskModel, models
from mtl_keras.backend import keras
from mtl_keras.layers import CrossStitch, HardConcreteRouter


@pytest.mark.parametrize("mode", ["trans", "avg"])
def test_snr_routes_levels_into_towers(mode, tmp_path):
    model = models.snr(keras.Input((6,), name="x"), ["ctr", "cvr"], mode=mode, num_subnetworks=(3, 2),
                       subnetwork_units=(8,), l0_penalty=0.01)
    routers = [layer for layer in model.layers if isinstance(layer, HardConcreteRouter)]
    assert [(r.num_inputs, r.num_outputs) for r in routers] == [(3, 2), (2, 2)]
    x, y = click_data(n=64)
    model(x, training=True)
    assert len(model.losses) == 2  # one L0 term per router
    model.compile(optimizer="adam", loss=BCE)
    history = model.fit(x, y, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    before = model.predict(x, verbose=0)
    after = save_and_load(model, tmp_path).predict(x, verbose=0)
    np.testing.assert_allclose(after["cvr"], before["cvr"], atol=1e-5)
    np.testing.assert_array_equal(model.predict(x, verbose=0)["ctr"], before["ctr"])  # no sampling


def test_cross_stitch_builder(tmp_path):
    model = models.cross_stitch(keras.Input((6,), name="x"), ["ctr", "cvr", "like"], units=(8, 4))
    assert sum(isinstance(layer, CrossStitch) for layer in model.layers) == 2
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    out = model.predict(x, verbose=0)
    assert set(out) == {"ctr", "cvr", "like"}
    np.testing.assert_allclose(save_and_load(model, tmp_path).predict(x, verbose=0)["like"], out["like"], atol=1e-6)
    with pytest.raises(ValueError, match="two or more"):
        models.cross_stitch(keras.Input((6,), name="x"), ["ctr"])


def click_conversion_data(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    click = rng.random(n) < 1 / (1 + np.exp(-(x[:, 0] + x[:, 1] - 1.0)))
    conversion = click & (rng.random(n) < 1 / (1 + np.exp(-(2.0 * x[:, 2] - x[:, 3]))))
    return x, click.astype("float32")[:, None], conversion.astype("float32")[:, None]


def test_esmm_learns_cvr_over_the_entire_space(tmp_path):
    x, click, conversion = click_conversion_data()
    model = models.esmm(keras.Input((8,), name="features"), tower_units=(16, 8))
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss={"ctr": "binary_crossentropy", "cvr": None, "ctcvr": "binary_crossentropy"})
    model.fit(x, {"ctr": click, "ctcvr": conversion}, epochs=4, batch_size=256, verbose=0)
    out = model.predict(x, verbose=0)
    assert set(out) == {"ctr", "cvr", "ctcvr"}
    np.testing.assert_array_equal(out["ctcvr"], out["ctr"] * out["cvr"])
    clicked = click[:, 0] == 1
    auc = keras.metrics.AUC()
    auc.update_state(conversion[clicked], out["cvr"][clicked])
    assert float(auc.result()) > 0.7
    loaded = save_and_load(model, tmp_path)
    np.testing.assert_allclose(loaded.predict(x[:50], verbose=0)["ctcvr"], out["ctcvr"][:50], atol=1e-6)


def two_domain_data(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    domain = rng.integers(0, 2, n).astype("int32")
    sign = np.where(domain == 0, 1.0, -1.0)  # the domains disagree on the first feature
    y = {"ctr": (sign * x[:, 0] + 0.3 * x[:, 1] > 0).astype("float32")[:, None],
         "cvr": (x[:, 2] > 0).astype("float32")[:, None]}
    return {"x": x, "domain": domain[:, None]}, y


def test_star_learns_domain_specific_behaviour(tmp_path):
    model = models.star(keras.Input((6,), name="x"), keras.Input((1,), dtype="int32", name="domain"),
                        ["ctr", "cvr"], units=(16, 8), num_domains=2)
    assert isinstance(model, MultiTaskModel)
    data, y = two_domain_data()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=BCE, metrics={"ctr": ["auc"]})
    history = model.fit(data, y, epochs=6, batch_size=128, verbose=0).history
    assert history["ctr_auc"][-1] > 0.9
    out = model.predict(data, verbose=0)
    loaded = save_and_load(model, tmp_path)
    np.testing.assert_allclose(loaded.predict(data, verbose=0)["ctr"], out["ctr"], atol=1e-5)
    with pytest.raises(ValueError, match="num_domains"):
        models.star(keras.Input((6,), name="x"), keras.Input((1,), dtype="int32", name="domain"), ["ctr"])


@pytest.mark.parametrize("name", ["snr", "cross_stitch", "star", "esmm"])
def test_every_new_builder_takes_auxiliary_towers(name):
    x_in = keras.Input((6,), name="x")
    if name == "star":
        model = models.star(x_in, keras.Input((1,), dtype="int32", name="domain"), ["ctr", "cvr"],
                            num_domains=2, auxiliary_tower_units=(3,))
    elif name == "esmm":
        model = models.esmm(x_in, auxiliary_tower_units=(3,))
    else:
        model = getattr(models, name)(x_in, ["ctr", "cvr"], auxiliary_tower_units=(3,))
    assert "ctr" in model.auxiliary_tasks
    assert model.get_layer("ctr_aux_tower_0").units == 3
