import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras.backend import keras
from mtl_keras.layers import CrossStitch


def test_mixing_equals_the_formula_and_starts_near_identity():
    layer = CrossStitch(3)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(4, 2, 3)).astype("float32") for _ in range(3)]
    layer(xs)
    np.testing.assert_allclose(np.array(layer.alpha), [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]], atol=1e-7)
    alpha = rng.normal(size=(3, 3)).astype("float32")
    layer.alpha.assign(alpha)
    out = to_numpy(layer(xs))
    for i in range(3):
        np.testing.assert_allclose(out[i], sum(alpha[i, j] * xs[j] for j in range(3)), atol=1e-5)


def test_round_trip_and_bad_input(tmp_path):
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    outs = CrossStitch(2, name="stitch")([a, b])
    model = keras.Model([a, b], {"a": outs[0], "b": outs[1]})
    x = [np.ones((2, 4), "float32"), np.arange(8, dtype="float32").reshape(2, 4)]
    model.get_layer("stitch").alpha.assign([[0.3, 0.7], [0.2, 0.8]])
    before = to_numpy(model(x))
    after = to_numpy(save_and_load(model, tmp_path)(x))
    for k in before:
        np.testing.assert_allclose(after[k], before[k], atol=1e-6)
    with pytest.raises(ValueError, match="num_tasks"):
        CrossStitch(1)
    with pytest.raises(ValueError, match="num_tasks = 2"):
        CrossStitch(2)([np.ones((2, 4), "float32")] * 3)
    with pytest.raises(ValueError, match="one shape"):
        CrossStitch(2)([np.ones((2, 4), "float32"), np.ones((2, 5), "float32")])
