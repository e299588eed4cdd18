import numpy as np
import pytest

from conftest import np_experts, np_gate, outputs_and_gradients, save_and_load, to_numpy
from mtl_keras.backend import keras, tf
from mtl_keras.layers import PLE, CGCLayer


def cgc_numpy(layer, task_inputs, shared_input):
    """CGC, Tang et al. 2020, from the layer's weights.

    Task k: softmax(W_g^k x_k) over [task k's experts(x_k); shared experts(x_s)].
    Shared gate (not last level): softmax(W_s x_s) over all experts of the level.
    """
    own = [np_experts(x, s.kernels, s.biases) for x, s in zip(task_inputs, layer.task_experts)]
    shared = np_experts(shared_input, layer.shared_experts.kernels, layer.shared_experts.biases)
    outputs = []
    for t, x in enumerate(task_inputs):
        gate = np_gate(x, layer.task_gate_kernels[t], layer.task_gate_biases[t])
        outputs.append(np.einsum("be,beh->bh", gate, np.concatenate([own[t], shared], axis=1)))
    if not layer.is_last_level:
        gate = np_gate(shared_input, layer.shared_gate_kernels[0], layer.shared_gate_biases[0])
        outputs.append(np.einsum("be,beh->bh", gate, np.concatenate(own + [shared], axis=1)))
    return outputs


@pytest.mark.parametrize("is_last_level", [True, False])
def test_first_level_equals_the_paper_formula(is_last_level):
    layer = CGCLayer(3, 2, 1, (6, 4), is_last_level=is_last_level)
    x = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    outputs = to_numpy(layer(x))
    expected = cgc_numpy(layer, [x] * 3, x)
    assert len(outputs) == (3 if is_last_level else 4)
    for got, want in zip(outputs, expected):
        assert got.shape == (5, 4)
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("is_last_level", [True, False])
def test_upper_level_reads_each_task_input(is_last_level):
    layer = CGCLayer(2, 1, 2, 3, is_last_level=is_last_level)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(4, 5)).astype("float32") for _ in range(3)]
    outputs = to_numpy(layer(inputs))
    for got, want in zip(outputs, cgc_numpy(layer, inputs[:2], inputs[2])):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_gates_cover_the_level_and_sum_to_one():
    layer = CGCLayer(2, 2, 1, 3, is_last_level=False, return_gates=True)
    x = np.random.default_rng(2).normal(size=(6, 4)).astype("float32")
    _, gates = to_numpy(layer(x))
    assert gates.shape == (6, 3, 5)  # 2 task gates + shared gate over 2*2 + 1 experts
    assert (gates >= 0).all()
    np.testing.assert_allclose(gates.sum(-1), 1.0, atol=1e-6)
    # Task 0's gate never weighs task 1's experts (columns 2, 3) and vice versa.
    np.testing.assert_array_equal(gates[:, 0, 2:4], 0.0)
    np.testing.assert_array_equal(gates[:, 1, 0:2], 0.0)
    want = np_gate(x, layer.task_gate_kernels[1], layer.task_gate_biases[1])
    np.testing.assert_allclose(gates[:, 1, [2, 3, 4]], want, atol=1e-6)


def test_ple_chains_levels_as_the_paper():
    ple = PLE(num_levels=3, num_tasks=2, num_task_experts=1, num_shared_experts=2, expert_units=4)
    x = np.random.default_rng(3).normal(size=(5, 6)).astype("float32")
    outputs = to_numpy(ple(x))
    level_in = ([x, x], x)
    for level in ple.levels:
        out = cgc_numpy(level, *level_in)
        level_in = (out[:2], out[2] if len(out) == 3 else None)
    assert [lvl.is_last_level for lvl in ple.levels] == [False, False, True]
    for got, want in zip(outputs, out):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_xla_compiled_ple_equals_the_paper_formula_and_its_gradients():
    """Under XLA the mixes are matmuls (gating.mix); outputs and gradients stay those of the formula."""
    ple = PLE(num_levels=2, num_tasks=2, num_task_experts=2, num_shared_experts=1, expert_units=4)
    x = tf.constant(np.random.default_rng(4).normal(size=(5, 6)).astype("float32"))
    compiled, compiled_grads = outputs_and_gradients(ple, x, jit_compile=True)
    _, plain_grads = outputs_and_gradients(ple, x, jit_compile=False)
    level_in = ([x.numpy()] * 2, x.numpy())
    for level in ple.levels:
        want = cgc_numpy(level, *level_in)
        level_in = (want[:2], want[2] if len(want) == 3 else None)
    for got, expected in zip(compiled, want):
        np.testing.assert_allclose(got, expected, atol=1e-5)
    for got, expected in zip(compiled_grads, plain_grads):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_eager_and_tf_function_agree():
    ple = PLE(2, 2, 1, 1, 8)
    x = tf.random.normal([4, 3])
    for a, b in zip(to_numpy(ple(x)), to_numpy(tf.function(lambda v: ple(v))(x))):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_dropout_only_in_training():
    layer = CGCLayer(2, 2, 2, 32, expert_dropout=0.5)
    x = tf.random.normal([8, 6])
    a, b = to_numpy(layer(x, training=False)), to_numpy(layer(x, training=False))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(to_numpy(layer(x, training=True))[0], a[0])


@pytest.mark.parametrize("is_last_level", [True, False])
def test_keras_file_round_trip_and_config(tmp_path, is_last_level):
    inputs = keras.Input((6,), name="features")
    cgc = CGCLayer(2, 1, 1, 4, is_last_level=is_last_level, name="cgc")
    ple = PLE(2, 2, 1, 1, 4, name="ple")
    first = cgc(inputs)
    stacked = ple(inputs)
    model = keras.Model(inputs, {"a": first[0], "b": first[1], "p": stacked[1]})
    x = np.random.default_rng(4).normal(size=(3, 6)).astype("float32")
    before = to_numpy(model(x))
    after = to_numpy(save_and_load(model, tmp_path)(x))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)
    for layer, cls in ((cgc, CGCLayer), (ple, PLE)):
        assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


def test_task_experts_are_per_task_variables():
    layer = CGCLayer(3, 2, 1, (5,))
    layer(tf.zeros([2, 4]))
    assert [tuple(s.kernels[0].shape) for s in layer.task_experts] == [(2, 4, 5)] * 3
    assert tuple(layer.shared_experts.kernels[0].shape) == (1, 4, 5)


def test_bad_inputs():
    layer = CGCLayer(2, 1, 1, 4)
    with pytest.raises(ValueError, match=r"num_tasks \+ 1 = 3"):
        layer([tf.zeros([2, 3])] * 2)
    with pytest.raises(ValueError, match=r"\[B, D\]"):
        CGCLayer(2, 1, 1, 4)(tf.zeros([2, 3, 4]))
    with pytest.raises(ValueError, match="share one width"):
        CGCLayer(2, 1, 1, 4)([tf.zeros([2, 3]), tf.zeros([2, 5]), tf.zeros([2, 3])])
    for kwargs, name in (
        (dict(num_tasks=2, num_task_experts=0, num_shared_experts=1, expert_units=4), "num_task_experts"),
        (dict(num_tasks=2, num_task_experts=1, num_shared_experts=0, expert_units=4), "num_shared_experts"),
        (dict(num_tasks=0, num_task_experts=1, num_shared_experts=1, expert_units=4), "num_tasks"),
    ):
        with pytest.raises(ValueError, match=name):
            CGCLayer(**kwargs)
    with pytest.raises(ValueError, match="num_levels"):
        PLE(0, 2, 1, 1, 4)
