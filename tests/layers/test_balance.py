import numpy as np
import pytest

from conftest import softmax, to_numpy
from mtl_keras import MultiTaskModel
from mtl_keras.backend import keras, tf
from mtl_keras.callbacks import ExpertUsage
from mtl_keras.layers import CGCLayer, ExpertGate
from mtl_keras.layers.balance import balance_loss, usage_statistics


def cv_numpy(gate):
    """Shazeer et al. 2017: CV(I)^2 of the importance I_e = sum_b gate[b, e]."""
    importance = gate.sum(0)
    return importance.var() / importance.mean() ** 2


def test_balance_losses_equal_their_formulas():
    gate = softmax(np.random.default_rng(0).normal(size=(9, 5)) * 2).astype("float32")
    np.testing.assert_allclose(float(balance_loss(tf.constant(gate))), cv_numpy(gate), rtol=1e-5)
    chosen = np.bincount(gate.argmax(1), minlength=5) / 9
    variable = tf.Variable(gate)
    with tf.GradientTape() as tape:
        switch = balance_loss(variable, form="switch")
    np.testing.assert_allclose(float(switch), 5 * np.sum(chosen * gate.mean(0)), rtol=1e-5)
    # Switch Transformers: the routed fractions f_e carry no gradient, only P_e does.
    np.testing.assert_allclose(tape.gradient(switch, variable).numpy(), np.tile(5 * chosen / 9, (9, 1)), rtol=1e-5)


def test_usage_statistics_per_gate():
    stats = usage_statistics(np.array([[0.25, 0.25, 0.25, 0.25], [0.0, 0.995, 0.005, 0.0]]))
    np.testing.assert_allclose(stats["entropy"], [np.log(4), -(0.995 * np.log(0.995) + 0.005 * np.log(0.005))])
    np.testing.assert_allclose(stats["max_share"], [0.25, 0.995])
    np.testing.assert_array_equal(stats["experts_used"], [4, 1])


def test_gates_add_the_penalty_in_training_only():
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    layer = ExpertGate(3, 2, 2, balance_penalty=0.3, return_gates=True)
    _, gates = to_numpy(layer(x, training=True))
    np.testing.assert_allclose(float(layer.losses[-1]), 0.3 * sum(cv_numpy(gates[:, t]) for t in range(2)), rtol=1e-5)
    layer(x, training=False)
    assert not layer.losses
    cgc = CGCLayer(2, 1, 2, 3, is_last_level=False, balance_penalty=0.5, balance_form="switch")
    cgc(x, training=True)
    assert len(cgc.losses) == 1 and float(cgc.losses[0]) >= 0.5 * 3  # three gates, each >= 1
    config = cgc.get_config()
    assert config["balance_penalty"] == 0.5 and CGCLayer.from_config(config).get_config() == config


@pytest.mark.parametrize("kwargs, match", [(dict(balance_penalty=-0.1), "balance_penalty"),
                                           (dict(balance_form="gini"), "balance_form"),
                                           (dict(gate_temperature=-1.0), "gate_temperature")])
def test_bad_balance_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExpertGate(3, 2, 2, **kwargs)
    with pytest.raises(ValueError, match=match):
        CGCLayer(2, 1, 1, 2, **kwargs)


def _used_experts(balance_penalty):
    """A gate that reads a constant (task-only routing) at a low temperature: rich-get-richer."""
    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 8)).astype("float32")
    y = {"a": np.sin(x[:, :4].sum(1, keepdims=True)).astype("float32")}
    inputs, ones = keras.Input((8,), name="x"), keras.Input((1,), name="one")
    (mixed,) = ExpertGate(4, (8,), 1, gate_temperature=0.1, balance_penalty=balance_penalty, name="moe")(
        inputs, gate_inputs=ones)
    model = MultiTaskModel({"x": inputs, "one": ones}, {"a": keras.layers.Dense(1, name="a")(mixed)})
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss={"a": "mse"}, jit_compile=False)
    feed = {"x": x, "one": np.ones((512, 1), "float32")}
    usage = ExpertUsage({"x": x[:16], "one": feed["one"][:16]})
    history = model.fit(feed, y, epochs=4, batch_size=64, verbose=0, callbacks=[usage]).history
    return history["expert_usage/moe/a/experts_used"][-1], history["expert_usage/moe/a/max_share"][-1]


def test_gates_collapse_without_the_penalty_and_keep_half_the_experts_with_it():
    # Measured: one expert takes 99.6 % (Keras 3) or 92 % (tf_keras) without the penalty; with
    # 0.1 all four stay above 1 % and the largest share is 46 % (Keras 3) or 32 % (tf_keras).
    _, collapsed_top = _used_experts(0.0)
    assert collapsed_top > 0.9
    kept, top = _used_experts(0.1)
    assert kept >= 2 and top < 0.6
