"""MMoE: experts shared by all tasks, one softmax gate per task."""

from mtl_keras.backend import IS_KERAS3, keras, register, tf
from mtl_keras.layers import checks
from mtl_keras.layers.experts import ExpertStack
from mtl_keras.layers.gating import add_gates, gate_probabilities


@register
class ExpertGate(keras.layers.Layer):
    """Multi-gate Mixture-of-Experts (MMoE).

    Ma et al., "Modeling Task Relationships in Multi-task Learning with
    Multi-gate Mixture-of-Experts", KDD 2018. For task k:
    ``g^k(x) = softmax(W_gk x)`` and ``f^k(x) = sum_i g^k_i(x) f_i(x)``,
    where f_i are the experts. ``num_tasks=1`` gives the one-gate MoE (OMoE).

    Args:
        num_experts: number of experts E (>= 1).
        expert_units: int or tuple of ints; hidden sizes of every expert.
        num_tasks: number of gates T (>= 1).
        expert_activation: activation of the expert layers.
        expert_dropout: dropout after every expert layer (training only).
        gate_temperature: softmax temperature of the gates (> 0).
        return_gates: also return the gate weights.

    Call arguments:
        inputs: ``[B, D]`` expert input.
        gate_inputs: optional gate input (default: ``inputs``): one ``[B, D_g]``
            tensor every gate reads, or a list of T tensors ``[B, D_t]``, gate t
            reading its own (a task's own features).
        training: enables dropout.

    Output:
        A list of T tensors ``[B, expert_units[-1]]``; with ``return_gates``,
        ``(outputs, gates)`` where gates is ``[B, T, E]`` and rows sum to 1.

    Example:
    >>> mmoe = ExpertGate(num_experts=4, expert_units=8, num_tasks=2)
    >>> [o.shape for o in mmoe(tf.zeros([3, 5]))]
    [TensorShape([3, 8]), TensorShape([3, 8])]
    """

    def __init__(
        self,
        num_experts,
        expert_units,
        num_tasks,
        expert_activation="relu",
        expert_dropout=0.0,
        gate_temperature=1.0,
        return_gates=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = checks.positive_int("num_experts", num_experts)
        self.expert_units = checks.units("expert_units", expert_units)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks)
        self.gate_temperature = checks.positive_float("gate_temperature", gate_temperature)
        self.return_gates = bool(return_gates)
        self.experts = ExpertStack(
            num_experts, self.expert_units, expert_activation, expert_dropout, name="experts"
        )
        self.gate_kernels = None

    def build(self, inputs_shape, gate_inputs_shape=None):
        inputs_shape = tf.TensorShape(inputs_shape)
        if inputs_shape.rank != 2:
            raise ValueError(f"ExpertGate `inputs` must have shape [B, D]; got {inputs_shape}.")
        self.experts.build(inputs_shape)
        # tf_keras passes only the first argument's shape to build: the gates are
        # then created at the first call, when the gate input's width is known.
        if IS_KERAS3:
            self._build_gates(gate_inputs_shape or inputs_shape)
        super().build(inputs_shape)

    def _build_gates(self, gate_inputs_shape):
        per_gate = isinstance(gate_inputs_shape, (list, tuple)) and not isinstance(
            gate_inputs_shape[0], (int, type(None))
        )
        shapes = [tf.TensorShape(s) for s in gate_inputs_shape] if per_gate else [tf.TensorShape(gate_inputs_shape)]
        if per_gate and len(shapes) != self.num_tasks:
            raise ValueError(
                f"ExpertGate `gate_inputs` must be one tensor or a list of num_tasks={self.num_tasks} "
                f"tensors; got a list of {len(shapes)}."
            )
        if any(shape.rank != 2 for shape in shapes):
            raise ValueError(
                f"ExpertGate `gate_inputs` must have shape [B, D_g] (each); got {shapes}."
            )
        widths = [shape[-1] for shape in shapes] if per_gate else shapes[0][-1]
        self.gate_kernels, self.gate_biases = add_gates(self, "gate", self.num_tasks, widths, self.num_experts)

    def call(self, inputs, gate_inputs=None, training=None):
        gate_inputs = inputs if gate_inputs is None else gate_inputs
        if self.gate_kernels is None:
            self._build_gates(
                [x.shape for x in gate_inputs] if isinstance(gate_inputs, (list, tuple)) else gate_inputs.shape
            )
        expert_outputs = self.experts(inputs, training=training)  # [B, E, H]
        gates = gate_probabilities(
            gate_inputs, self.gate_kernels, self.gate_biases, self.gate_temperature
        )
        outputs = [self.experts.mix(gate, expert_outputs) for gate in gates]
        return (outputs, tf.stack(gates, axis=1)) if self.return_gates else outputs

    def gate_weights(self, inputs, gate_inputs=None):
        """The gates alone, [B, T, E], for diagnostics (``mtl_keras.callbacks.ExpertUsage``)."""
        gate_inputs = inputs if gate_inputs is None else gate_inputs
        gates = gate_probabilities(
            gate_inputs, self.gate_kernels, self.gate_biases, self.gate_temperature
        )
        return tf.stack(gates, axis=1)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=list(self.expert_units),
            num_tasks=self.num_tasks,
            expert_activation=keras.activations.serialize(self.experts.activation),
            expert_dropout=self.experts.dropout,
            gate_temperature=self.gate_temperature,
            return_gates=self.return_gates,
        )
        return config
