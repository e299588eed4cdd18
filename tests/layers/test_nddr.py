import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.layers import NDDR, CrossStitch

EPS = 1e-3


def columns(count=3, width=4, batch=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, width)).astype("float32") for _ in range(count)]


def np_nddr(layer, xs, training):
    """y_i = relu(BN_i([x_1..x_T] @ W_i)) from the layer's own weights; BN with the batch's
    moments in training, the moving ones otherwise."""
    z = np.concatenate(xs, axis=-1)
    kernel = np.asarray(layer.kernel)
    outputs = []
    for i, norm in enumerate(layer.norms):
        y = z @ kernel[i]
        if training:
            mean, var = y.mean(axis=0), y.var(axis=0)
        else:
            mean, var = np.asarray(norm.moving_mean), np.asarray(norm.moving_variance)
        y = np.asarray(norm.gamma) * (y - mean) / np.sqrt(var + EPS) + np.asarray(norm.beta)
        outputs.append(np.maximum(y, 0.0))
    return outputs


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        if weight.dtype != "int64":
            values = rng.normal(size=weight.shape).astype("float32")
            weight.assign(np.abs(values) + 0.5 if "variance" in weight.name else values)


def test_identity_block_initialisation():
    layer = NDDR(3, units=2, diagonal=0.7, off_diagonal=0.2)
    layer(columns(width=4))
    kernel = np.asarray(layer.kernel)  # [T, T * C, units]
    eye = np.eye(4, 2)
    for i in range(3):
        for j in range(3):
            np.testing.assert_allclose(kernel[i, 4 * j:4 * (j + 1)], (0.7 if i == j else 0.2) * eye)
    assert NDDR(3).off_diagonal == pytest.approx(0.05)  # (1 - 0.9) / (T - 1)


@pytest.mark.parametrize("training", [False, True])
def test_outputs_equal_numpy_from_the_layers_weights(training):
    layer = NDDR(3, units=3)
    xs = columns()
    layer(xs)
    randomize(layer)
    moving_before = np.asarray(layer.norms[0].moving_mean)
    got = to_numpy(layer(xs, training=training))
    want = np_nddr(layer, xs, training)
    for i in range(3):
        np.testing.assert_allclose(got[i], want[i], atol=1e-4)
    moved = not np.allclose(np.asarray(layer.norms[0].moving_mean), moving_before)
    assert moved == training  # only training calls update the moving statistics


def test_block_scaled_identities_are_a_cross_stitch_unit():
    """W_ij = alpha_ij I, no batch norm, no activation: y_i = sum_j alpha_ij x_j, CrossStitch's formula."""
    alpha = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.0, 0.4, 0.6]], "float32")
    nddr = NDDR(3, batch_norm=False, activation=None)
    stitch = CrossStitch(3)
    xs = columns()
    nddr(xs)
    stitch(xs)
    nddr.kernel.assign(np.stack([np.concatenate([alpha[i, j] * np.eye(4) for j in range(3)]) for i in range(3)]))
    stitch.alpha.assign(alpha)
    for a, b in zip(to_numpy(nddr(xs)), to_numpy(stitch(xs))):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_zero_off_diagonal_network_equals_cross_stitch_with_identity_alphas():
    """The nddr builder with W_ii = I, W_ij = 0 (no batch norm) and the cross_stitch builder with
    alpha = I, on the same column and tower weights, give the same heads."""
    x = keras.Input((6,), name="features")
    fused = models.nddr(x, ["a", "b"], units=(5, 3), batch_norm=False, diagonal=1.0, off_diagonal=0.0)
    stitched = models.cross_stitch(keras.Input((6,), name="features"), ["a", "b"], units=(5, 3))
    for layer in stitched.layers:
        if isinstance(layer, CrossStitch):
            layer.alpha.assign(np.eye(2))
        elif isinstance(layer, keras.layers.Dense):
            fused.get_layer(layer.name).set_weights(layer.get_weights())
    data = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    got, want = fused.predict(data, verbose=0), stitched.predict(data, verbose=0)
    for task in ("a", "b"):
        np.testing.assert_allclose(got[task], want[task], atol=1e-6)
    # and the default initialisation mixes the columns: the heads move
    mixed = models.nddr(keras.Input((6,), name="features"), ["a", "b"], units=(5, 3), batch_norm=False)
    for layer in stitched.layers:
        if isinstance(layer, keras.layers.Dense):
            mixed.get_layer(layer.name).set_weights(layer.get_weights())
    assert not np.allclose(mixed.predict(data, verbose=0)["a"], want["a"], atol=1e-4)


def test_keras_file_round_trip(tmp_path):
    inputs = [keras.Input((4,), name=f"x{i}") for i in range(2)]
    outs = NDDR(2, units=3, diagonal=0.8, kernel_regularizer="l2", name="nddr")(inputs)
    model = keras.Model(inputs, {"a": outs[0], "b": outs[1]})
    randomize(model.get_layer("nddr"))
    xs = columns(2)
    before = to_numpy(model(xs))
    loaded = save_and_load(model, tmp_path)
    after = to_numpy(loaded(xs))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)
    config = loaded.get_layer("nddr").get_config()
    assert config["diagonal"] == 0.8 and config["units"] == 3 and config["kernel_regularizer"] is not None
    assert len(loaded.get_layer("nddr").losses) == 1  # the regulariser came back too


def test_bad_input():
    with pytest.raises(ValueError, match="num_tasks"):
        NDDR(1)
    with pytest.raises(ValueError, match="num_tasks = 2"):
        NDDR(2)(columns(3))
    with pytest.raises(ValueError, match="one width"):
        NDDR(2)([tf.ones([2, 4]), tf.ones([2, 5])])
    with pytest.raises(ValueError, match="task_names"):
        models.nddr(keras.Input((6,)), ["only"])
