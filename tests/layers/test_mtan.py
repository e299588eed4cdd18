import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.layers import MTANAttention


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def relu(z):
    return np.maximum(z, 0.0)


def np_attention(layer, shared, previous=None):
    """MTAN's level from the layer's own weights: a^k = sigmoid(relu(z G1_k + c1_k) G2_k + c2_k) * p,
    z = p (first level) or [p ; relu(a^_prev^k F + b_F)]."""
    w = {v.name.split("/")[-1].split(":")[0]: np.asarray(v) for v in layer.weights}
    outputs = []
    for k in range(layer.num_tasks):
        z = shared if previous is None else np.concatenate(
            [shared, relu(previous[k] @ w["f_kernel"] + w["f_bias"])], axis=-1
        )
        mask = sigmoid(relu(z @ w["g1_kernel"][k] + w["g1_bias"][k]) @ w["g2_kernel"][k] + w["g2_bias"][k])
        outputs.append(mask * shared)
    return outputs


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))


def test_two_levels_equal_numpy_from_the_layers_weights():
    rng = np.random.default_rng(0)
    p1 = rng.normal(size=(5, 4)).astype("float32")
    p2 = rng.normal(size=(5, 3)).astype("float32")
    first, second = MTANAttention(3), MTANAttention(3, attention_units=2)
    attended = first([p1])
    second([p2] + attended)
    randomize(first, 1)
    randomize(second, 2)
    got1 = to_numpy(first([p1]))
    want1 = np_attention(first, p1)
    got2 = to_numpy(second([p2] + [tf.constant(a) for a in got1]))
    want2 = np_attention(second, p2, want1)
    for got, want in ((got1, want1), (got2, want2)):
        for k in range(3):
            np.testing.assert_allclose(got[k], want[k], atol=1e-5)
    # the tasks' masks differ (own G1, G2) and every mask lies in (0, 1)
    assert not np.allclose(got2[0], got2[1])
    ratio = got2[0] / p2
    assert ((ratio > 0) & (ratio < 1)).all()


def test_training_and_inference_agree_and_gradients_reach_every_weight():
    layer = MTANAttention(2)
    p1 = tf.random.normal([4, 3])
    first = MTANAttention(2)(([p1]))
    layer([p1] + first)
    same = [to_numpy(layer([p1] + first, training=flag)) for flag in (True, False)]
    np.testing.assert_array_equal(same[0][0], same[1][0])
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(a) for a in layer([p1] + first)])
    assert all(g is not None and np.abs(np.asarray(g)).max() > 0 for g in tape.gradient(loss, layer.trainable_variables))


def test_a_bottleneck_keeps_the_cost_per_task_below_a_column():
    def count(tasks):
        model = models.mtan(keras.Input((20,)), [f"t{i}" for i in range(tasks)], units=(64, 32),
                            attention_units=8, tower_units=())
        return model.count_params()

    trunk = 21 * 64 + 65 * 32
    assert count(4) - count(2) < 2 * trunk  # two more columns would cost twice the trunk


def test_keras_file_round_trip(tmp_path):
    p1, p2 = keras.Input((4,), name="p1"), keras.Input((3,), name="p2")
    attended = MTANAttention(2, name="first")([p1])
    outs = MTANAttention(2, kernel_regularizer="l2", name="second")([p2] + attended)
    model = keras.Model([p1, p2], {"a": outs[0], "b": outs[1]})
    randomize(model.get_layer("second"))
    xs = [np.ones((2, 4), "float32"), np.arange(6, dtype="float32").reshape(2, 3)]
    before = to_numpy(model(xs))
    loaded = save_and_load(model, tmp_path)
    after = to_numpy(loaded(xs))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)
    assert loaded.get_layer("second").get_config()["kernel_regularizer"] is not None


def test_bad_input():
    with pytest.raises(ValueError, match="num_tasks"):
        MTANAttention(1)
    with pytest.raises(ValueError, match="num_tasks = 2"):
        MTANAttention(2)([tf.ones([2, 3])] * 2)
    with pytest.raises(ValueError, match="one width"):
        MTANAttention(2)([tf.ones([2, 3]), tf.ones([2, 3]), tf.ones([2, 4])])
    with pytest.raises(ValueError, match="task_names"):
        models.mtan(keras.Input((6,)), ["only"])
