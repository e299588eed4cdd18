import numpy as np
import pytest

from conftest import np_experts, np_gate, outputs_and_gradients, save_and_load, to_numpy
from mtl_keras.backend import keras, tf
from mtl_keras.layers import ExpertGate, ExpertStack


def mmoe_numpy(layer, x, gate_x=None):
    """MMoE, Ma et al. 2018: f^k(x) = sum_i softmax(W_gk x)_i f_i(x), from the layer's weights."""
    gate_x = x if gate_x is None else gate_x
    experts = np_experts(x, layer.experts.kernels, layer.experts.biases)
    gates = np.stack(
        [np_gate(gate_x, k, b) for k, b in zip(layer.gate_kernels, layer.gate_biases)], axis=1
    )
    return [np.einsum("be,beh->bh", gates[:, t], experts) for t in range(layer.num_tasks)], gates


def test_outputs_equal_the_paper_formula():
    layer = ExpertGate(num_experts=5, expert_units=(7, 4), num_tasks=3, return_gates=True)
    x = np.random.default_rng(0).normal(size=(6, 9)).astype("float32")
    outputs, gates = to_numpy(layer(x))
    expected, expected_gates = mmoe_numpy(layer, x)
    assert len(outputs) == 3 and outputs[0].shape == (6, 4)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(gates, expected_gates, atol=1e-6)
    assert gates.shape == (6, 3, 5)
    assert (gates >= 0).all()
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-6)


def test_separate_gate_inputs_and_temperature():
    layer = ExpertGate(4, 3, 2, gate_temperature=0.5, return_gates=True)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 6)).astype("float32")
    gx = rng.normal(size=(5, 2)).astype("float32")
    outputs, gates = to_numpy(layer(x, gate_inputs=gx))
    assert layer.gate_kernels[0].shape == (2, 4)
    logits = [gx @ np.asarray(k) + np.asarray(b) for k, b in zip(layer.gate_kernels, layer.gate_biases)]
    experts = np_experts(x, layer.experts.kernels, layer.experts.biases)
    for t in range(2):
        want_gate = np.exp(logits[t] / 0.5) / np.exp(logits[t] / 0.5).sum(-1, keepdims=True)
        np.testing.assert_allclose(gates[:, t], want_gate, atol=1e-5)
        np.testing.assert_allclose(outputs[t], np.einsum("be,beh->bh", want_gate, experts), atol=1e-5)


def test_experts_are_one_batched_weight_tensor():
    layer = ExpertGate(num_experts=8, expert_units=(16, 4), num_tasks=2)
    layer(tf.zeros([2, 10]))
    assert [tuple(k.shape) for k in layer.experts.kernels] == [(8, 10, 16), (8, 16, 4)]


def test_expert_stack_trains_through_plain_gemms_and_infers_with_the_same_outputs():
    """Training: the first layer is one [B, D] x [D, E H] GEMM, its gradients plain MatMuls (the
    broadcast matmul's ran at half the forward's rate); inference: the broadcast matmul, which
    reads the kernel in place. Both give the experts' formula."""
    stack = ExpertStack(num_experts=3, units=(5, 4))
    x = tf.constant(np.random.default_rng(2).normal(size=(6, 7)).astype("float32"))
    inference = to_numpy(stack(x, training=False))
    want = np_experts(x.numpy(), stack.kernels, stack.biases)
    np.testing.assert_allclose(inference, want, atol=1e-5)
    np.testing.assert_allclose(to_numpy(stack(x, training=True)), want, atol=1e-5)

    one_layer = ExpertStack(num_experts=3, units=(5,))
    one_layer(x)

    def op_types(training):
        @tf.function
        def gradients(x):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(one_layer(x, training=training))
            return tape.gradient(loss, one_layer.kernels)

        graph = gradients.get_concrete_function(tf.TensorSpec([None, 7])).graph
        return {op.type for op in graph.get_operations()}

    batched = {"BatchMatMulV2", "BatchMatMulV3"}
    assert "MatMul" in op_types(True) and not op_types(True) & batched, sorted(op_types(True))
    assert op_types(False) & batched  # inference (and its gradient) keeps the broadcast form


def test_xla_compiled_mixes_equal_the_paper_formula_and_its_gradients():
    """Under XLA the mixes are matmuls (gating.mix); outputs and gradients stay those of the formula."""
    layer = ExpertGate(num_experts=5, expert_units=(7, 4), num_tasks=3)
    x = tf.constant(np.random.default_rng(5).normal(size=(6, 9)).astype("float32"))
    compiled, compiled_grads = outputs_and_gradients(layer, x, jit_compile=True)
    _, plain_grads = outputs_and_gradients(layer, x, jit_compile=False)
    for got, want in zip(compiled, mmoe_numpy(layer, x.numpy())[0]):
        np.testing.assert_allclose(got, want, atol=1e-5)
    for got, want in zip(compiled_grads, plain_grads):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_eager_and_tf_function_agree():
    layer = ExpertGate(4, (8,), 2)
    x = tf.random.normal([5, 3])
    eager = to_numpy(layer(x))
    graph = to_numpy(tf.function(lambda v: layer(v))(x))
    for a, b in zip(eager, graph):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_dropout_only_in_training():
    layer = ExpertGate(4, (32,), 2, expert_dropout=0.5)
    x = tf.random.normal([16, 8])
    inference = [to_numpy(layer(x, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(inference[0][0], inference[1][0])
    training = to_numpy(layer(x, training=True))
    assert not np.allclose(training[0], inference[0][0])


def test_keras_file_round_trip_and_config(tmp_path):
    inputs = keras.Input((6,), name="features")
    outputs = ExpertGate(3, (5,), 2, name="mmoe")(inputs)
    model = keras.Model(inputs, {"a": outputs[0], "b": outputs[1]})
    x = np.random.default_rng(2).normal(size=(4, 6)).astype("float32")
    before = to_numpy(model(x))
    loaded = save_and_load(model, tmp_path)
    after = to_numpy(loaded(x))
    for task in before:
        np.testing.assert_allclose(after[task], before[task], atol=1e-6)
    layer = model.get_layer("mmoe")
    clone = ExpertGate.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert isinstance(loaded.get_layer("mmoe"), ExpertGate)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_experts=0, expert_units=4, num_tasks=2), "num_experts"),
        (dict(num_experts=2, expert_units=(), num_tasks=2), "expert_units"),
        (dict(num_experts=2, expert_units=4, num_tasks=0), "num_tasks"),
        (dict(num_experts=2, expert_units=4, num_tasks=2, expert_dropout=1.0), "dropout"),
        (dict(num_experts=2, expert_units=4, num_tasks=2, gate_temperature=0), "gate_temperature"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExpertGate(**kwargs)


def test_wrong_rank_is_rejected():
    with pytest.raises(ValueError, match=r"inputs.*\[B, D\]"):
        ExpertGate(2, 4, 2)(tf.zeros([2, 3, 4]))
    with pytest.raises(ValueError, match=r"inputs.*\[B, D\]"):
        ExpertStack(2, 4)(tf.zeros([3]))


def test_one_gate_input_per_task():
    """Gate t reads its own [B, D_t] (a task's own features); the experts read ``inputs``."""
    layer = ExpertGate(3, 4, 2, return_gates=True)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 6)).astype("float32")
    own = [rng.normal(size=(5, 2)).astype("float32"), rng.normal(size=(5, 7)).astype("float32")]
    outputs, gates = to_numpy(layer(x, gate_inputs=own))
    assert [tuple(k.shape) for k in layer.gate_kernels] == [(2, 3), (7, 3)]
    experts = np_experts(x, layer.experts.kernels, layer.experts.biases)
    for t in range(2):
        gate = np_gate(own[t], layer.gate_kernels[t], layer.gate_biases[t])
        np.testing.assert_allclose(gates[:, t], gate, atol=1e-6)
        np.testing.assert_allclose(outputs[t], np.einsum("be,beh->bh", gate, experts), atol=1e-5)
    with pytest.raises(ValueError, match="a list of num_tasks=2 tensors; got a list of 3"):
        ExpertGate(3, 4, 2)(x, gate_inputs=own + own[:1])


def test_one_gate_input_per_task_in_a_saved_model(tmp_path):
    x = keras.Input((6,), name="x")
    a, b = keras.Input((2,), name="a"), keras.Input((7,), name="b")
    outputs = ExpertGate(3, 4, 2, name="mmoe")(x, gate_inputs=[a, b])
    model = keras.Model([x, a, b], outputs)
    rng = np.random.default_rng(3)
    feed = [rng.normal(size=(4, d)).astype("float32") for d in (6, 2, 7)]
    loaded = save_and_load(model, tmp_path)
    for got, want in zip(loaded.predict(feed, verbose=0), model.predict(feed, verbose=0)):
        np.testing.assert_allclose(got, want, atol=1e-6)
