"""The public mixing API of expert stacks (``RecordsRepresentation.mix``) and fast mode's check of it."""

import numpy as np
import pytest

import mtl_keras
from mtl_keras.backend import keras, tf
from mtl_keras.layers import ExpertStack


class TwoGates(keras.layers.Layer):
    """A user's own gate over a linear expert stack, written with the public ``mix`` only.

    ``leak`` also reads the stack's output outside ``mix`` (a mean over experts).
    """

    def __init__(self, leak=False, **kwargs):
        super().__init__(**kwargs)
        self.leak = leak
        self.stack = ExpertStack(3, (4,), activation="linear")
        self.gates = [keras.layers.Dense(3, activation="softmax") for _ in range(2)]

    def call(self, inputs, training=None):
        outputs = self.stack(inputs, training=training)
        mixed = [self.stack.mix(gate(inputs), outputs) for gate in self.gates]
        if self.leak:
            mixed[0] = mixed[0] + tf.reduce_mean(outputs, axis=1)
        return mixed


def build(leak=False):
    x = keras.Input((5,), name="features")
    first, second = TwoGates(leak)(x)
    heads = {
        "a": keras.layers.Dense(1, name="a")(first),
        "b": keras.layers.Dense(1, name="b")(second),
    }
    return mtl_keras.MultiTaskModel(x, heads)


def data(rows):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(rows, 5)).astype("float32")
    return x, {"a": rng.normal(size=(rows, 1)).astype("float32"), "b": rng.normal(size=(rows, 1)).astype("float32")}


def test_a_users_mixing_layer_trains_in_fast_mode_as_in_exact_mode():
    # With one example a batch and a linear single-layer stack, the Gram matrix of the
    # stack's weight gradients is (|x|^2 + 1) times that of its output gradients, and
    # MGDA's weights do not change with the scale of K: fast and exact must take the same
    # steps. Catches a `mix` that records the wrong gate or mixture (fast mode's Gram
    # matrix then differs and so do the weights).
    x, y = data(4)
    reference = build()
    start = reference.get_weights()
    trained = {}
    for mode in ("exact", "fast"):
        model = build()
        model.set_weights(start)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss={"a": "mse", "b": "mse"},
                      gradient_projection=mtl_keras.losses.MGDA(), projection_mode=mode)
        model.fit(x, y, batch_size=1, epochs=1, shuffle=False, verbose=0)
        trained[mode] = model.get_weights()
    moved = max(np.abs(a - b).max() for a, b in zip(trained["exact"], start))
    assert moved > 1e-3
    for exact, fast in zip(trained["exact"], trained["fast"]):
        np.testing.assert_allclose(fast, exact, rtol=1e-4, atol=1e-6)


def test_fast_mode_refuses_an_output_also_read_outside_mix():
    # Catches fast mode computing the Gram matrix from the mixes alone when another read
    # exists (its gradient path would be missing from K).
    x, y = data(8)
    model = build(leak=True)
    model.compile(loss={"a": "mse", "b": "mse"}, gradient_projection="pcgrad", projection_mode="fast")
    with pytest.raises(ValueError, match="also read by .*Mean.*projection_mode='exact'"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    # Exact mode does not depend on the record.
    model.compile(loss={"a": "mse", "b": "mse"}, gradient_projection="pcgrad", projection_mode="exact")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)


def test_mix_refuses_a_tensor_that_is_not_the_layers_output():
    stack = ExpertStack(2, (3,))
    outputs = stack(tf.ones([2, 4]))
    with pytest.raises(ValueError, match="`outputs` must be this layer's output"):
        stack.mix(tf.fill([2, 2], 0.5), outputs + 1.0)
    mixed = stack.mix(tf.constant([[1.0, 0.0], [0.25, 0.75]]), outputs)
    expected = np.stack([outputs[0, 0], 0.25 * outputs[1, 0] + 0.75 * outputs[1, 1]])
    np.testing.assert_allclose(mixed, expected, rtol=1e-6)
