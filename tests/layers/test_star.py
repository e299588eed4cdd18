import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras.backend import keras, tf
from mtl_keras.layers import PartitionedNorm, StarDense


def test_partitioned_norm_training_equals_numpy_on_a_mixed_batch():
    norm = PartitionedNorm(3, epsilon=1e-3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4)).astype("float32")
    ids = np.array([0, 1, 1, 2, 0, 1, 2, 2, 0, 1])
    norm(x, ids)
    norm.domain_gamma.assign(rng.uniform(0.5, 1.5, (3, 4)).astype("float32"))
    norm.domain_beta.assign(rng.normal(size=(3, 4)).astype("float32"))
    norm.gamma.assign(rng.uniform(0.5, 1.5, 4).astype("float32"))
    got = np.array(norm(x, ids, training=True))
    want = np.zeros_like(x)
    for p in range(3):
        rows = ids == p
        mean, var = x[rows].mean(0), x[rows].var(0)
        scale = np.array(norm.gamma) * np.array(norm.domain_gamma)[p]
        shift = np.array(norm.beta) + np.array(norm.domain_beta)[p]
        want[rows] = scale * (x[rows] - mean) / np.sqrt(var + 1e-3) + shift
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_moving_statistics_are_per_domain_and_used_at_inference():
    norm = PartitionedNorm(3, momentum=0.9)
    rng = np.random.default_rng(1)
    means = np.array([-3.0, 0.5, 4.0])
    step = tf.function(lambda a, b: norm(a, b, training=True))
    for _ in range(120):
        ids = rng.integers(0, 2, 64)  # domain 2 never appears
        x = (rng.normal(size=(64, 2)) + means[ids, None]).astype("float32")
        step(x, ids)
    moving = np.array(norm.moving_mean)
    for p in (0, 1):
        assert abs(moving[p].mean() - means[p]) <= 0.05 * abs(means[p]) + 0.05
    np.testing.assert_array_equal(moving[2], 0.0)  # untouched: never in a batch
    x = np.full((2, 2), means[0], "float32")
    out = np.array(norm(x, np.array([0, 0]), training=False))
    want = (x - moving[0]) / np.sqrt(np.array(norm.moving_variance)[0] + 1e-3)
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_star_dense_equals_numpy_and_keeps_domains_apart():
    layer = StarDense(3, num_domains=2, activation="relu")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 4)).astype("float32")
    ids = np.array([0, 1, 0, 1, 1, 0])
    layer(x, ids)
    layer.domain_kernel.assign(rng.normal(size=(2, 4, 3)).astype("float32"))
    layer.domain_bias.assign(rng.normal(size=(2, 3)).astype("float32"))
    w, b = np.array(layer.kernel), np.array(layer.bias)
    wp, bp = np.array(layer.domain_kernel), np.array(layer.domain_bias)
    want = np.stack([np.maximum(x[r] @ (w * wp[ids[r]]) + b + bp[ids[r]], 0) for r in range(6)])
    np.testing.assert_allclose(np.array(layer(x, ids)), want, atol=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x[ids == 0], np.zeros(3, "int32")))
    g_kernel, g_bias = tape.gradient(loss, [layer.domain_kernel, layer.domain_bias])
    assert np.abs(np.array(g_kernel)[0]).max() > 0
    np.testing.assert_array_equal(np.array(g_kernel)[1], 0.0)
    np.testing.assert_array_equal(np.array(g_bias)[1], 0.0)


@pytest.mark.parametrize("make", [lambda: PartitionedNorm(2), lambda: StarDense(3, num_domains=2)])
def test_out_of_range_domain_ids_fail_in_eager_and_graph(make):
    layer = make()
    x = np.ones((3, 4), "float32")
    layer(x, np.array([0, 1, 1]))
    for bad in (np.array([0, 2, 1]), np.array([-1, 0, 0])):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"`domain_ids` must be integers in \[0, 2\)"):
            layer(x, bad)
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"`domain_ids` must be integers in \[0, 2\)"):
            tf.function(lambda a, b: layer(a, b))(x, bad)


def test_round_trips(tmp_path):
    x_in, d_in = keras.Input((4,), name="x"), keras.Input((1,), dtype="int32", name="domain")
    hidden = StarDense(3, num_domains=2, name="star")(x_in, d_in)
    out = PartitionedNorm(2, name="pn")(hidden, d_in)
    model = keras.Model({"x": x_in, "domain": d_in}, out)
    rng = np.random.default_rng(3)
    data = {"x": rng.normal(size=(5, 4)).astype("float32"), "domain": np.array([[0], [1], [1], [0], [1]], "int32")}
    model.get_layer("star").domain_bias.assign(rng.normal(size=(2, 3)).astype("float32"))
    before = to_numpy(model(data))
    np.testing.assert_allclose(to_numpy(save_and_load(model, tmp_path)(data)), before, atol=1e-6)
    for name, cls in (("star", StarDense), ("pn", PartitionedNorm)):
        layer = model.get_layer(name)
        assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_domains"):
        PartitionedNorm(0)
    with pytest.raises(ValueError, match="momentum"):
        PartitionedNorm(2, momentum=1.0)
    with pytest.raises(ValueError, match="units"):
        StarDense(0, num_domains=2)
