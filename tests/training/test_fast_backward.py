"""Fast mode's backward pass into the shared variables, started at the representation where
``training.sharing.read_only_through`` allows it and at the losses elsewhere: the same step."""

import numpy as np
import pytest

from mtl_keras import MultiTaskModel, losses, models
from mtl_keras.backend import keras, tf
from mtl_keras.layers import ExpertGate
from mtl_keras.training import gradient_modes

TASKS = ["ctr", "cvr", "like"]


def bypassed():
    """An MMoE whose towers also read the shared embedding the experts read: that
    embedding's kernel reaches the losses around the mixes as well as through them."""
    x = keras.Input((6,), name="x")
    shared = keras.layers.Dense(5, name="embedding")(x)
    mixes = ExpertGate(3, (8,), len(TASKS))(shared)
    heads = {
        task: keras.layers.Dense(1, activation="sigmoid", name=task)(
            keras.layers.Concatenate()([mix, shared]))
        for task, mix in zip(TASKS, mixes)
    }
    return MultiTaskModel(x, heads)


def wide():
    """An MMoE plus a wide part every head adds: a shared variable only read around the mixes."""
    x = keras.Input((6,), name="x")
    mixes = ExpertGate(3, (8,), len(TASKS))(x)
    linear = keras.layers.Dense(1, name="wide")(x)
    heads = {
        task: keras.layers.Activation("sigmoid", name=task)(keras.layers.Add()([keras.layers.Dense(1)(mix), linear]))
        for task, mix in zip(TASKS, mixes)
    }
    return MultiTaskModel(x, heads)


BUILDERS = {
    "mmoe": (lambda: models.mmoe(keras.Input((6,), name="x"), TASKS, num_experts=3, expert_units=(8,),
                                 kernel_regularizer=keras.regularizers.L2(0.05)), True),
    "shared_bottom": (lambda: models.shared_bottom(keras.Input((6,), name="x"), TASKS, bottom_units=(8,)), True),
    "wide": (wide, True),
    "ple": (lambda: models.ple(keras.Input((6,), name="x"), TASKS, num_levels=2), False),
    "bypassed": (bypassed, False),
}


def data():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 6)).astype("float32")
    labels = {t: (x[:, i:i + 1] + 0.5 * x[:, 3:4] > 0).astype("float32") for i, t in enumerate(TASKS)}
    return x, labels


def trained(build, start, check, jit):
    """Weights after 3 SGD steps of fast MGDA (coefficients far from equal) from ``start``, and where
    the shared backward pass started; ``check`` stands for ``read_only_through``."""
    model = build()
    model.set_weights(start)
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss={t: "binary_crossentropy" for t in TASKS},
                  gradient_projection=losses.MGDA(), projection_mode="fast", jit_compile=jit)
    original = gradient_modes.read_only_through
    gradient_modes.read_only_through = check
    try:
        model.fit(*data(), batch_size=16, epochs=1, shuffle=False, verbose=0)
    finally:
        gradient_modes.read_only_through = original
    return [np.array(w) for w in model.get_weights()], model._mtl_trainer.mode.starts_at_representation


# The check reads the traced graph, the same with XLA or without: XLA for the benchmark's MMoE only
# (CI's time).
CASES = [(name, False) for name in sorted(BUILDERS)] + [("mmoe", True)]


@pytest.mark.parametrize("name, jit", CASES)
def test_the_shared_backward_starts_at_the_representation_only_where_that_is_the_same_step(name, jit):
    """MMoE, Shared-Bottom and an MMoE with a wide part start at the representation; PLE (levels
    nested) and an MMoE whose towers also read the experts' shared input start at the losses.
    Either way the step equals the one started at the losses (the pass fast mode is defined by).

    Catches: the combination at R without MGDA's coefficients, the regularization or the wide
    part's own pass left out (weights differ), and a check that misses nesting or a read around
    R (PLE or the bypassed MMoE would start at R and double-count or miss a path).
    """
    build, starts_at_representation = BUILDERS[name]
    keras.utils.set_random_seed(3)
    start = build().get_weights()
    got, started = trained(build, start, gradient_modes.read_only_through, jit)
    want, reference_started = trained(build, start, lambda *_: False, jit)
    assert started is starts_at_representation and reference_started is False
    moved = max(np.abs(a - b).max() for a, b in zip(want, start))
    assert moved > 1e-2
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)


def test_eager_steps_start_at_the_losses():
    """An eager step has no graph to prove the shortcut on."""
    assert gradient_modes.read_only_through([tf.constant(1.0)], [tf.constant(2.0)]) is False
    build = BUILDERS["mmoe"][0]
    model = build()
    model.compile(optimizer="sgd", loss={t: "binary_crossentropy" for t in TASKS}, gradient_projection="pcgrad",
                  projection_mode="fast", run_eagerly=True)
    model.fit(*data(), batch_size=32, epochs=1, verbose=0)
    assert model._mtl_trainer.mode.starts_at_representation is False
