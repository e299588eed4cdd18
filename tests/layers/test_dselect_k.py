import numpy as np
import pytest

from conftest import np_experts, outputs_and_gradients, save_and_load, softmax, to_numpy
from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.export import export_saved_model
from mtl_keras.layers import PLE, CGCLayer, DSelectKGate, ExpertGate


def np_smooth_step(t, gamma):
    return np.clip(np.where(np.abs(t) < gamma / 2, -2 * t**3 / gamma**3 + 1.5 * t / gamma + 0.5, t > 0), 0, 1)


def dselect_numpy(gate, x):
    """Hazimeh et al. 2021 from the gate's weights: (gate [B, n], selectors r [B, k, n])."""
    n, k = gate.num_experts, gate.k
    m = int(np.ceil(np.log2(n)))
    if gate.per_example:
        z = x @ np.asarray(gate.z_kernel) + np.asarray(gate.z_bias)
        w = x @ np.asarray(gate.w_kernel) + np.asarray(gate.w_bias)
    else:
        z = np.tile(np.asarray(gate.z_bias), (len(x), 1))
        w = np.tile(np.asarray(gate.w_bias), (len(x), 1))
    s = np_smooth_step(z.reshape(len(x), k, m), gate.gamma)
    r = np.ones((len(x), k, n))
    for expert in range(n):
        for j, bit in enumerate(np.binary_repr(expert, width=m)):
            r[:, :, expert] *= s[:, :, j] if bit == "1" else 1 - s[:, :, j]
    alpha = softmax(w / gate.temperature)
    return np.einsum("bk,bkn->bn", alpha, r), r


def _big_z(gate, value):
    gate.z_kernel.assign(np.random.default_rng(9).normal(size=gate.z_kernel.shape).astype("float32") * value)
    gate.z_bias.assign(np.random.default_rng(8).normal(size=gate.z_bias.shape).astype("float32") * value)


@pytest.mark.parametrize("num_experts, per_example", [(4, True), (5, True), (6, False)])
def test_gate_equals_the_paper_formula(num_experts, per_example):
    gate = DSelectKGate(num_experts, k=3, gamma=2.0, per_example=per_example, temperature=0.5)
    x = np.random.default_rng(0).normal(size=(7, 4)).astype("float32")
    gate.build((None, 4))
    if per_example:
        _big_z(gate, 0.6)  # some z in the cubic part, some outside it
    else:
        gate.z_bias.assign(np.array([1.5, -0.3, 0.2, -2.0, 0.9, 0.05, 0.4, -0.6, 3.0], "float32"))
    want, r = dselect_numpy(gate, x)
    np.testing.assert_allclose(to_numpy(gate(x)), want, atol=1e-6)
    entropy = -(r * np.log(r + 1e-6)).sum(axis=(1, 2)).mean()
    unreachable = 0.0 if num_experts == 4 else (1 / r.sum(-1)).sum(-1).mean()
    gate(x, training=True)
    np.testing.assert_allclose(float(gate.losses[-1]), 1e-3 * entropy + unreachable, rtol=1e-5)


def test_converged_selectors_pick_exactly_k_experts():
    gate = DSelectKGate(4, k=2, per_example=False)
    gate.build((None, 3))
    gate.z_bias.assign([1.0, -1.0, -1.0, -1.0])  # selector 0 -> code 10 = expert 2, selector 1 -> expert 0
    gate.w_bias.assign([0.3, -0.2])
    alpha = softmax(np.array([0.3, -0.2]))
    np.testing.assert_allclose(gate.static_weights(), [alpha[1], 0.0, alpha[0], 0.0], atol=1e-6)


def test_mmoe_with_dselect_k_equals_the_formula_in_eager_graph_and_xla():
    layer = ExpertGate(5, (6, 3), 2, gate="dselect_k", k=2, return_gates=False)
    x = tf.constant(np.random.default_rng(1).normal(size=(6, 4)).astype("float32"))
    layer(x)  # builds
    for gate in layer.dselect_gates:
        _big_z(gate, 0.5)
    eager = to_numpy(layer(x))
    experts = np_experts(x.numpy(), layer.experts.kernels, layer.experts.biases)
    for t, gate in enumerate(layer.dselect_gates):
        np.testing.assert_allclose(eager[t], np.einsum("be,beh->bh", dselect_numpy(gate, x.numpy())[0], experts),
                                   atol=1e-5)
    graph, graph_grads = outputs_and_gradients(layer, x, jit_compile=False)
    xla, xla_grads = outputs_and_gradients(layer, x, jit_compile=True)
    for a, b, c in zip(eager, graph, xla):
        np.testing.assert_allclose(b, a, atol=1e-6)
        np.testing.assert_allclose(c, a, atol=1e-5)
    assert all(np.isfinite(g).all() for g in graph_grads)
    z_kernels = [i for i, v in enumerate(layer.trainable_variables) if "z_kernel" in v.name]
    assert len(z_kernels) == 2 and all(np.abs(graph_grads[i]).sum() > 0 for i in z_kernels)
    for a, b in zip(graph_grads, xla_grads):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_cgc_and_ple_take_dselect_k_gates(tmp_path):
    cgc = CGCLayer(2, 2, 2, 3, is_last_level=False, gate="dselect_k", k=1, return_gates=True)
    x = np.random.default_rng(2).normal(size=(5, 4)).astype("float32")
    outputs, gates = to_numpy(cgc(x))
    assert len(outputs) == 3 and gates.shape == (5, 3, 6)
    want, _ = dselect_numpy(cgc.task_dselect_gates[1], x)
    np.testing.assert_allclose(gates[:, 1, [2, 3, 4, 5]], want, atol=1e-6)
    inputs = keras.Input((4,), name="x")
    ple = PLE(2, 2, 1, 1, 3, gate="dselect_k_static", k=2, name="ple")
    model = keras.Model(inputs, ple(inputs))
    before = to_numpy(model(x))
    for got, want in zip(to_numpy(save_and_load(model, tmp_path)(x)), before):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert PLE.from_config(ple.get_config()).get_config() == ple.get_config()


def test_mmoe_builder_trains_round_trips_and_reports_gates(tmp_path):
    model = models.mmoe(keras.Input((6,), name="x"), ["a", "b"], num_experts=4, expert_units=(8,),
                        tower_units=(4,), gate="dselect_k", k=2)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(256, 6)).astype("float32")
    y = {"a": (x[:, :1] > 0).astype("float32"), "b": (x[:, 1:2] > 0).astype("float32")}
    # XLA is checked on the layer above; compiling the train step with it costs ~20 s here.
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss={"a": "binary_crossentropy", "b": "binary_crossentropy"},
                  jit_compile=False)
    history = model.fit(x, y, epochs=3, batch_size=64, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    layer = model.get_layer("mmoe")
    assert layer.get_config()["gate"] == "dselect_k" and layer.get_config()["k"] == 2
    before = model.predict(x[:8], verbose=0)
    after = save_and_load(model, tmp_path).predict(x[:8], verbose=0)
    np.testing.assert_allclose(after["b"], before["b"], atol=1e-5)


def test_export_computes_only_the_selected_experts(tmp_path):
    model = models.mmoe(keras.Input((6,), name="features"), ["a", "b"], num_experts=8, expert_units=(4,),
                        tower_units=(2,), gate="dselect_k_static", k=1)
    layer = model.get_layer("mmoe")
    x = np.random.default_rng(4).normal(size=(5, 6)).astype("float32")
    layer.freeze()  # not converged yet: nothing changes
    model(x)
    assert layer.frozen is None and layer.experts.recorded_output.shape[1] == 8
    layer.dselect_gates[0].z_bias.assign([1.0, -1.0, 1.0])   # expert 0b101 = 5
    layer.dselect_gates[1].z_bias.assign([-1.0, 1.0, -1.0])  # expert 0b010 = 2
    want = model.predict(x, verbose=0)
    layer.freeze()
    frozen = model(x)
    assert layer.experts.recorded_output.shape[1] == 2  # only experts 2 and 5 computed
    np.testing.assert_allclose(np.asarray(frozen["a"]), want["a"], atol=1e-6)
    layer.unfreeze()
    served = tf.saved_model.load(export_saved_model(model, str(tmp_path / "m")))
    out = served.signatures["serving_default"](features=tf.constant(x))
    np.testing.assert_allclose(out["b"].numpy(), want["b"], atol=1e-6)
    assert layer.frozen is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_experts=4, k=5), r"`k` must be at most num_experts = 4"),
        (dict(num_experts=1, k=1), "num_experts"),
        (dict(num_experts=4, entropy_penalty=-1.0), "entropy_penalty"),
        (dict(num_experts=4, temperature=0.0), "temperature"),
        (dict(num_experts=4, gamma=0.0), "gamma"),
    ],
)
def test_bad_gate_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DSelectKGate(**kwargs)


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 3\]"):
        ExpertGate(3, 4, 2, gate="dselect_k", k=4)
    with pytest.raises(ValueError, match="`gate` must be one of"):
        ExpertGate(3, 4, 2, gate="top_k")
    with pytest.raises(ValueError, match=r"`k` must be an integer in \[1, 2\]"):
        CGCLayer(2, 1, 1, 4, gate="dselect_k", k=3)
    with pytest.raises(ValueError, match=r"inputs.*\[B, D\]"):
        DSelectKGate(4)(tf.zeros([2, 3, 4]))
