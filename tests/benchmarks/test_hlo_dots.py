"""benchmarks/timing/hlo.py: the dot FLOPs of compiled train steps."""

import pathlib
import sys

import numpy as np

from mtl_keras import models
from mtl_keras.backend import keras, tf

sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / "benchmarks"))
from timing.hlo import dot_flops, train_step_dot_flops  # noqa: E402


def test_dot_flops_reads_shapes_and_contracting_dimensions():
    hlo = """
  %p0 = f32[32,16]{1,0} parameter(0)
  %p1 = f32[16,8]{1,0} parameter(1)
  %dot.1 = f32[32,8]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  ROOT %dot.2 = f32[16]{0} dot(%p0, %dot.1), lhs_contracting_dims={0}, rhs_contracting_dims={0}
"""
    # 2 * 32 * 8 * 16 and 2 * 16 * 32 (the second contracts the 32 rows; catches a parser that
    # takes the output's or the wrong operand's dimensions).
    assert dot_flops(hlo) == (2, 2 * 32 * 8 * 16 + 2 * 16 * 32)


def test_fast_mode_compiles_to_the_equal_steps_dots():
    """A fast projection's step has the equal step's matmuls once its shared backward pass starts
    at the mixes (training.gradient_modes.Fast). Catches fast mode taking the towers' backward pass
    twice again, and a count that misses the experts' forward and weight-gradient dots."""
    tasks = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(64, 32)).astype("float32"))
    y = {t: tf.constant((rng.random((64, 1)) > 0.5).astype("float32")) for t in tasks}
    flops = {}
    for name, options in [("equal", {}), ("fast", dict(gradient_projection="pcgrad", projection_mode="fast"))]:
        keras.utils.set_random_seed(0)
        model = models.mmoe(keras.Input((32,), name="x"), tasks, num_experts=4, expert_units=(64,), tower_units=(16,))
        # One step builds the optimizer and the trainer (without XLA: only the step below is compiled).
        model.compile(optimizer="adam", loss={t: "binary_crossentropy" for t in tasks}, jit_compile=False, **options)
        model.fit(x, y, batch_size=64, epochs=1, verbose=0)
        flops[name] = train_step_dot_flops(model, x, y)[1]
    expert_weight_gradient, tower_input_gradient = 2 * 64 * 32 * 4 * 64, 2 * 64 * 16 * 64
    # Beyond the equal step's dots only [T]-sized ones (the coefficients' algebra).
    assert 0 <= flops["fast"] - flops["equal"] < tower_input_gradient
    assert flops["equal"] >= 2 * expert_weight_gradient
