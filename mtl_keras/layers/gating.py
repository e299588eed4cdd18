"""Softmax gates, one weight pair per gate.

Each gate owns its own kernel and bias and is evaluated on its own (gates are
tiny next to the experts): a task's gate then has no graph path to another
task's output, so it is a task-specific variable, absent from
``MultiTaskModel.shared_variables``, and gradient projections leave it alone.
"""

from mtl_keras.backend import in_xla_context, tf
from mtl_keras.layers import conventions


def add_gates(layer, name, num_gates, input_dim, num_choices, kernel_args=None):
    """Creates ``num_gates`` gates of ``input_dim -> num_choices`` on ``layer``
    (``input_dim``: one width, or a list of one per gate); ``kernel_args`` from
    ``conventions.resolve`` (default: Glorot kernels, zero biases)."""
    args = kernel_args or conventions.resolve()
    widths = list(input_dim) if isinstance(input_dim, (list, tuple)) else [input_dim] * num_gates
    kernels = [
        conventions.add_kernel(layer, args, f"{name}_kernel_{g}", (widths[g], num_choices), (widths[g], num_choices))
        for g in range(num_gates)
    ]
    biases = [conventions.add_bias(layer, args, f"{name}_bias_{g}", (num_choices,)) for g in range(num_gates)]
    return kernels, biases


def gate_probabilities(inputs, kernels, biases, temperature=1.0):
    """[softmax((x_g W_g + b_g) / temperature) for every gate g], each [B, C].

    ``inputs`` is one [B, D] tensor that every gate reads, or a list with one
    [B, D] tensor per gate.
    """
    if not isinstance(inputs, (list, tuple)):
        inputs = [inputs] * len(kernels)
    return [
        tf.nn.softmax((tf.matmul(x, kernel) + bias) / temperature, axis=-1)
        for x, kernel, bias in zip(inputs, kernels, biases)
    ]


def mix(gate, expert_outputs):
    """sum_e gate[b, e] * expert_outputs[b, e, :] -> [B, H].

    Compiled by XLA: a batched [1, E] x [E, H] matmul, which XLA emits as one
    contraction. Otherwise a broadcast product and a sum: TensorFlow runs a
    batched matmul (or ``einsum("be,beh->bh")``) as B tiny matmuls, plus as
    many for each gradient (docs/benchmarks.md, "Why the defaults").
    """
    if in_xla_context():
        return tf.squeeze(tf.matmul(gate[:, None, :], expert_outputs), axis=1)
    return tf.reduce_sum(gate[:, :, None] * expert_outputs, axis=1)


class ReportsGates:
    """``call`` and ``gate_weights`` for a layer whose ``outputs_and_gates(inputs, training)``
    returns (outputs, gates); ``return_gates`` picks what ``call`` returns."""

    def call(self, inputs, training=None):
        outputs, gates = self.outputs_and_gates(inputs, training)
        return (outputs, gates) if self.return_gates else outputs

    def gate_weights(self, inputs):
        """The gates alone (see the layer's docstring for their layout), for diagnostics."""
        return self.outputs_and_gates(inputs, training=False)[1]
