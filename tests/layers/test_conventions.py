"""Keras's kernel arguments on every layer with a kernel, and through every builder."""

import numpy as np
import pytest

from conftest import save_and_load, softmax, to_numpy
from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.layers import PLE, CGCLayer, ExpertGate, ExpertStack, HardConcreteRouter, StarDense

L2 = 0.1


def _layers():
    """(layer, call) for every layer class with a kernel, built on small inputs."""
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 5)).astype("float32"))
    return [
        (lambda **kw: ExpertStack(3, (4, 2), **kw), lambda layer: layer(x)),
        (lambda **kw: ExpertGate(3, 4, 2, **kw), lambda layer: layer(x)),
        (lambda **kw: CGCLayer(2, 1, 1, 4, is_last_level=False, **kw), lambda layer: layer(x)),
        (lambda **kw: PLE(2, 2, 1, 1, 4, **kw), lambda layer: layer(x)),
        (lambda **kw: StarDense(4, 2, **kw), lambda layer: layer(x, tf.constant([0, 1, 1]))),
    ]


def _kernels(layer):
    return [v for v in layer.trainable_variables if "kernel" in v.name and "domain" not in v.name]


def _biases(layer):
    return [v for v in layer.trainable_variables if "bias" in v.name and "domain" not in v.name]


@pytest.mark.parametrize("index", range(5))
def test_initializers_regularizers_and_config(index):
    make, call = _layers()[index]
    layer = make(kernel_initializer="ones", bias_initializer=keras.initializers.Constant(0.5),
                 kernel_regularizer=keras.regularizers.L2(L2), bias_regularizer="l1")
    call(layer)
    kernels, biases = _kernels(layer), _biases(layer)
    assert kernels and biases
    for v in kernels:
        np.testing.assert_array_equal(np.asarray(v), 1.0)
    for v in biases:
        np.testing.assert_array_equal(np.asarray(v), 0.5)
    # One penalty per kernel and bias, as one Dense per weight would add (l1's default 0.01).
    want = sum(L2 * np.sum(np.square(v)) for v in kernels) + sum(0.01 * np.sum(np.abs(v)) for v in biases)
    np.testing.assert_allclose(float(tf.add_n(layer.losses)), want, rtol=1e-5)
    config = layer.get_config()
    assert config["kernel_regularizer"]["config"]["l2"] == pytest.approx(L2)
    assert config["bias_initializer"]["class_name"] == "Constant"
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_expert_kernels_get_the_variance_of_one_expert():
    """Glorot over the [E, in, out] block would see E times the fans: each expert must see its own."""
    stack = ExpertStack(num_experts=64, units=(32,))
    stack(tf.zeros([1, 16]))
    kernel = np.asarray(stack.kernels[0])
    limit = np.sqrt(6.0 / (16 + 32))
    assert np.abs(kernel).max() <= limit
    np.testing.assert_allclose(kernel.std(), limit / np.sqrt(3.0), rtol=0.05)
    assert not np.allclose(kernel[0], kernel[1])  # experts start apart
    he = ExpertStack(num_experts=64, units=(32,), kernel_initializer="he_normal")
    he(tf.zeros([1, 16]))
    np.testing.assert_allclose(np.asarray(he.kernels[0]).std(), np.sqrt(2.0 / 16), rtol=0.1)


def test_router_kernels_follow_the_convention():
    router = HardConcreteRouter(2, units=3, kernel_initializer="zeros", kernel_regularizer="l2")
    router([tf.ones([2, 4]), tf.ones([2, 5])])
    assert all(not np.asarray(k).any() for k in router.kernels)
    assert len(router.losses) == 2
    config = router.get_config()
    assert HardConcreteRouter.from_config(config).get_config() == config


def test_gates_draw_their_own_initial_weights():
    layer = ExpertGate(4, 3, 3)
    layer(tf.zeros([2, 6]))
    first, second = (np.asarray(k) for k in layer.gate_kernels[:2])
    assert not np.allclose(first, second)


@pytest.mark.parametrize("layer_class", [CGCLayer, PLE])
def test_gate_temperature_on_cgc_and_ple(layer_class):
    x = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    args = (2, 2, 1, 1, 3) if layer_class is PLE else (2, 1, 1, 3)
    layer = layer_class(*args, gate_temperature=0.25, return_gates=True)
    _, gates = to_numpy(layer(x))
    cgc = layer.levels[0] if layer_class is PLE else layer
    gates = gates[0] if layer_class is PLE else gates
    logits = x @ np.asarray(cgc.task_gate_kernels[0]) + np.asarray(cgc.task_gate_biases[0])
    # Task 0 reads its own expert (column 0) and the shared one (the last column).
    np.testing.assert_allclose(gates[:, 0, [0, -1]], softmax(logits / 0.25), atol=1e-5)
    assert layer.get_config()["gate_temperature"] == 0.25
    with pytest.raises(ValueError, match="gate_temperature"):
        layer_class(*args, gate_temperature=0.0)


def test_bad_kernel_arguments():
    with pytest.raises(ValueError, match="kernel_initializer"):
        ExpertGate(2, 3, 2, kernel_initializer="no_such_initializer")
    with pytest.raises(ValueError, match="bias_regularizer"):
        StarDense(2, 2, bias_regularizer="no_such_regularizer")


BUILDERS = {
    "shared_bottom": lambda x, **kw: models.shared_bottom(x, ["a", "b"], bottom_units=(4,), tower_units=(2,), **kw),
    "mmoe": lambda x, **kw: models.mmoe(x, ["a", "b"], num_experts=2, expert_units=(3,), tower_units=(2,), **kw),
    "ple": lambda x, **kw: models.ple(x, ["a", "b"], expert_units=(3,), tower_units=(2,), **kw),
    "snr": lambda x, **kw: models.snr(x, ["a", "b"], num_subnetworks=(2, 2), subnetwork_units=(3,), **kw),
    "cross_stitch": lambda x, **kw: models.cross_stitch(x, ["a", "b"], units=(3,), **kw),
    "esmm": lambda x, **kw: models.esmm(x, tower_units=(3,), **kw),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builders_pass_the_kernel_arguments_to_every_layer(name):
    model = BUILDERS[name](keras.Input((5,), name="x"), kernel_initializer="zeros", bias_initializer="ones",
                           kernel_regularizer="l2", auxiliary_tower_units=(2,))
    kernels = [v for v in model.trainable_variables if "kernel" in v.name]
    biases = [v for v in model.trainable_variables if "bias" in v.name]
    assert kernels and all(not np.asarray(v).any() for v in kernels)
    assert biases and all((np.asarray(v) == 1.0).all() for v in biases)
    assert len(model.losses) == len(kernels)  # l2: one term per kernel (SNR's L0 terms come in training)


def test_star_builder_passes_the_kernel_arguments():
    domain = keras.Input((), dtype="int32", name="domain")
    model = models.star(keras.Input((5,), name="x"), domain, ["a"], units=(3,), num_domains=2,
                        auxiliary_units=(2,), kernel_initializer="zeros")
    kernels = [v for v in model.trainable_variables if "kernel" in v.name and "domain" not in v.name]
    assert len(kernels) >= 4 and all(not np.asarray(v).any() for v in kernels)


def test_regularized_model_round_trips(tmp_path):
    model = models.mmoe(keras.Input((5,), name="x"), ["a", "b"], num_experts=2, expert_units=(3,),
                        kernel_regularizer=keras.regularizers.L2(0.05))
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    model(x)
    loaded = save_and_load(model, tmp_path)
    loaded(x)
    np.testing.assert_allclose(float(tf.add_n(loaded.losses)), float(tf.add_n(model.losses)), rtol=1e-6)
    layer = loaded.get_layer("mmoe")
    assert layer.get_config()["kernel_regularizer"]["config"]["l2"] == pytest.approx(0.05)
