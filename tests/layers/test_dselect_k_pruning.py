"""CGC/PLE levels whose static DSelect-k gates converged: frozen (as an export freezes them),
they compute only the experts some gate selected, with the outputs of the unfrozen level."""

import numpy as np

from conftest import to_numpy
from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.export import export_saved_model
from mtl_keras.layers import PLE
from mtl_keras.layers.dselect_k import binary_codes

X = np.random.default_rng(5).normal(size=(6, 4)).astype("float32")
# Two levels, two tasks, 2 experts per task and 2 shared, k = 1. Level columns: task 0's experts
# 0-1, task 1's 2-3, shared 4-5; a task gate sees [its own two, the shared two].
# Level 0: task 0 picks its expert 0, task 1 shared expert 0, the shared gate task 0's expert 1,
# so task 1's stack is not read at all. Level 1 (no shared gate): both pick shared expert 1.
SELECTION = [([0], [2], [1]), ([3], [3])]
SELECTED_PER_STACK = [[2, 0, 1], [0, 0, 1]]  # experts computed per level: task 0, task 1, shared


def select(gate, experts):
    """Puts every selector of a static gate outside the smooth step's cubic part, selector i
    on expert experts[i]: the gate has converged to those experts."""
    codes = binary_codes(gate.num_experts)
    gate.z_bias.assign((2.0 * codes[experts] - 1.0).reshape(-1))


def converge(ple, selection=SELECTION):
    for level, chosen in zip(ple.levels, selection):
        for gate, experts in zip(level.task_dselect_gates + (level.shared_dselect_gates or []), chosen):
            select(gate, experts)


def stacks(level):
    return level.task_experts + [level.shared_experts]


def test_frozen_levels_compute_the_selected_experts_only_with_unchanged_outputs_and_gates():
    ple = PLE(2, 2, 2, 2, (3, 2), gate="dselect_k_static", k=1, return_gates=True)
    ple(X)
    converge(ple)
    want_outputs, want_gates = to_numpy(ple(X))
    for level in ple.levels:
        level.freeze()
    for got, want in zip(to_numpy(ple(X)), (want_outputs, want_gates)):  # gates: what ExpertUsage reads
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, atol=1e-6)
    traced = tf.function(lambda x: ple(x)[0]).get_concrete_function(tf.TensorSpec([None, 4]))
    for got, want in zip(traced(tf.constant(X)), want_outputs):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    for level, counts in zip(ple.levels, SELECTED_PER_STACK):
        for stack, count in zip(stacks(level), counts):
            if count:  # a stack no gate selected is not called (the export test counts its kernels)
                assert stack.recorded_output.shape[1] == count, (stack.name, count)
    ple(X, training=True)  # training never takes the frozen path
    assert [s.recorded_output.shape[1] for s in stacks(ple.levels[1])] == [2, 2, 2]
    for level in ple.levels:
        level.unfreeze()
    ple(X)
    assert [s.recorded_output.shape[1] for s in stacks(ple.levels[0])] == [2, 2, 2]


def test_an_unconverged_gate_leaves_its_level_unpruned():
    ple = PLE(2, 2, 2, 2, 3, gate="dselect_k_static", k=1)
    ple(X)
    converge(ple)
    ple.levels[1].task_dselect_gates[1].z_bias.assign([1.0, 0.1])  # 0.1: inside the cubic part
    want = to_numpy(ple(X))
    for level in ple.levels:
        level.freeze()
    assert ple.levels[0].frozen is not None and ple.levels[1].frozen is None
    for got, expected in zip(to_numpy(ple(X)), want):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    assert [s.recorded_output.shape[1] for s in stacks(ple.levels[1])] == [2, 2, 2]
    softmax = PLE(1, 2, 1, 1, 3)
    softmax(X)
    softmax.levels[0].freeze()
    assert softmax.levels[0].frozen is None


def test_export_saves_and_serves_only_the_selected_experts(tmp_path):
    model = models.ple(keras.Input((4,), name="x"), ["a", "b"], num_task_experts=2, num_shared_experts=2,
                       expert_units=(3, 2), tower_units=(2,), gate="dselect_k_static", k=1)
    ple = model.get_layer("ple")
    converge(ple)
    want = model.predict(X, verbose=0)
    served = tf.saved_model.load(export_saved_model(model, str(tmp_path / "m")))
    got = served.signatures["serving_default"](x=tf.constant(X))
    for task in ("a", "b"):
        np.testing.assert_allclose(got[task].numpy(), want[task], atol=1e-6)
    expert_kernels = [v for v in served.serving_variables if len(v.shape) == 3]
    # 2 levels x 3 stacks x 2 depths unpruned; the selected stacks' alone: (2 + 1) x 2
    assert len(expert_kernels) == 2 * sum(count > 0 for counts in SELECTED_PER_STACK for count in counts)
    assert all(level.frozen is None for level in ple.levels)
