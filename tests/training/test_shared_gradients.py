"""The fast projections' task Gram matrix from recorded mixtures (shared_gradients.mixing_gram)."""

import numpy as np
import pytest

from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.layers.experts import ExpertStack
from mtl_keras.layers.representation import Mixing
from mtl_keras.training.sharing import representation_layers
from mtl_keras.training.representation_gram import representation_gram

TASKS = ["a", "b", "c"]


def build(builder):
    inputs = keras.Input((6,), name="x")
    if builder == "mmoe":
        return models.mmoe(inputs, TASKS, num_experts=3, expert_units=(5,))
    return models.ple(inputs, TASKS, num_levels=2, num_task_experts=2, num_shared_experts=2, expert_units=(5,))


@pytest.mark.parametrize("builder", ["mmoe", "ple"])
def test_the_gram_from_mixtures_equals_the_gram_of_the_expert_output_gradients(builder):
    model = build(builder)
    x = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    layers = representation_layers(model)
    with tf.GradientTape(persistent=True) as tape:
        pred = model(x, training=True)
        task_losses = [
            tf.reduce_mean(pred["a"] ** 2),
            tf.reduce_mean((pred["b"] - 0.3) ** 2),
            tf.reduce_mean(pred["a"] * pred["c"]),  # reads two tasks' mixtures, as ESMM's CTCVR does
        ]
    factored = [layer.recorded_representation for layer in layers]
    assert all(isinstance(r, Mixing) for r in factored)
    # PLE: the level-1 task experts feed the shared gate too, so they are shared stacks with two reads.
    assert len(layers) == (1 if builder == "mmoe" else 1 + 1 + len(TASKS))
    want = representation_gram(tape, task_losses, [layer.recorded_output for layer in layers])
    got = representation_gram(tape, task_losses, factored)
    assert np.abs(np.array(want)).max() > 0
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-4, atol=1e-7)


def test_a_stack_read_some_other_way_stands_for_itself():
    stack = ExpertStack(2, (3,))
    output = stack(tf.ones([4, 5]))
    assert stack.recorded_representation is output
