"""MMoE: experts shared by all tasks, one softmax gate per task."""

import numpy as np

from mtl_keras.backend import IS_KERAS3, keras, register, tf
from mtl_keras.layers import checks
from mtl_keras.layers.experts import ExpertStack
from mtl_keras.layers.gate_options import GateOptions, constant_gates
from mtl_keras.layers.gating import add_gates
from mtl_keras.layers.pruning import PrunedAtExport


@register
class ExpertGate(GateOptions, PrunedAtExport, keras.layers.Layer):
    """Multi-gate Mixture-of-Experts (MMoE).

    Ma et al., "Modeling Task Relationships in Multi-task Learning with
    Multi-gate Mixture-of-Experts", KDD 2018. For task k:
    ``g^k(x) = softmax(W_gk x / temperature)`` and ``f^k(x) = sum_i g^k_i(x) f_i(x)``,
    where f_i are the experts. ``num_tasks=1`` gives the one-gate MoE (OMoE).
    ``gate="dselect_k"`` replaces each softmax gate by a ``DSelectKGate``
    (Hazimeh et al., NeurIPS 2021) that selects at most ``k`` experts;
    ``"dselect_k_static"`` by its task-only form, one fixed choice per task:
    once every such gate has converged to at most k experts, ``freeze()``
    (which ``export_saved_model`` calls) makes the layer compute only the
    experts some gate selected.

    Args:
        num_experts: number of experts E (>= 1).
        expert_units: int or tuple of ints; hidden sizes of every expert.
        num_tasks: number of gates T (>= 1).
        expert_activation: activation of the expert layers.
        expert_dropout: dropout after every expert layer (training only).
        gate_temperature: softmax temperature of the gates (> 0); of the
            selector weights for DSelect-k.
        return_gates: also return the gate weights.
        gate: "softmax", "dselect_k" (per example) or "dselect_k_static".
        k: experts a DSelect-k gate selects (1 <= k <= num_experts).
        entropy_penalty: DSelect-k's entropy regulariser coefficient.
        balance_penalty: coefficient (>= 0) of a load-balancing loss added in
            training for every gate (``mtl_keras.layers.balance.balance_loss``),
            which keeps the experts in use; 0 adds nothing.
        balance_form: "cv" (squared coefficient of variation of the experts'
            importance, Shazeer et al. 2017) or "switch" (Fedus et al. 2022).
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense`` takes them, for the
            experts and the gates (``mtl_keras.layers.conventions``).

    Call arguments:
        inputs: ``[B, D]`` expert input.
        gate_inputs: optional gate input (default: ``inputs``): one ``[B, D_g]``
            tensor every gate reads, or a list of T tensors ``[B, D_t]``, gate t
            reading its own (a task's own features).
        training: enables dropout.

    Output shape:
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
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        gate="softmax",
        k=2,
        entropy_penalty=1e-3,
        balance_penalty=0.0,
        balance_form="cv",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_gate_options(
            gate, k, entropy_penalty, gate_temperature, balance_penalty, balance_form,
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
        )
        self.num_experts = checks.positive_int("num_experts", num_experts)
        self.expert_units = checks.units("expert_units", expert_units)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks)
        self.return_gates = bool(return_gates)
        self.experts = ExpertStack(
            num_experts, self.expert_units, expert_activation, expert_dropout, name="experts",
            **self.kernel_args,
        )
        self.dselect_gates = self._dselect_gates(self.num_tasks, self.num_experts, "dselect_k")
        self.gate_kernels = None
        self.frozen = None

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
        if self.dselect_gates is not None:
            for gate, shape in zip(self.dselect_gates, shapes * self.num_tasks if not per_gate else shapes):
                gate.build(shape)
            self.gate_kernels, self.gate_biases = [], []
            return
        widths = [shape[-1] for shape in shapes] if per_gate else shapes[0][-1]
        self.gate_kernels, self.gate_biases = add_gates(
            self, "gate", self.num_tasks, widths, self.num_experts, self.kernel_args
        )

    def call(self, inputs, gate_inputs=None, training=None):
        gate_inputs = inputs if gate_inputs is None else gate_inputs
        if self.gate_kernels is None:
            self._build_gates(
                [x.shape for x in gate_inputs] if isinstance(gate_inputs, (list, tuple)) else gate_inputs.shape
            )
        if self.frozen is not None and not training:
            return self._call_frozen(inputs)
        expert_outputs = self.experts(inputs, training=training)  # [B, E, H]
        gates = self._gates(gate_inputs, training)
        self._add_balance_loss(gates, training)
        outputs = [self.experts.mix(gate, expert_outputs) for gate in gates]
        return (outputs, tf.stack(gates, axis=1)) if self.return_gates else outputs

    def _gates(self, gate_inputs, training=None):
        return self._probabilities(self.dselect_gates, gate_inputs, self.gate_kernels, self.gate_biases, training)

    def gate_weights(self, inputs, gate_inputs=None):
        """The gates alone, [B, T, E], for diagnostics (``mtl_keras.callbacks.ExpertUsage``)."""
        return tf.stack(self._gates(inputs if gate_inputs is None else gate_inputs), axis=1)

    def freeze(self):
        """For an export: when every gate is a static DSelect-k gate with at most k non-zero
        weights, later inference calls compute only the experts some gate selected, with the
        gates as constants. Otherwise nothing changes."""
        weights = self._converged_selection(self.dselect_gates)
        self.frozen = None if weights is None else np.stack(weights)  # [T, E]

    def unfreeze(self):
        self.frozen = None

    def _call_frozen(self, inputs):
        used = np.flatnonzero(self.frozen.any(axis=0))
        expert_outputs = self.experts.subset(inputs, used)  # [B, |used|, H]
        outputs = [self.experts.mix(constant_gates(row[used], expert_outputs), expert_outputs) for row in self.frozen]
        return (outputs, constant_gates(self.frozen, expert_outputs)) if self.return_gates else outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            expert_units=list(self.expert_units),
            num_tasks=self.num_tasks,
            expert_activation=keras.activations.serialize(self.experts.activation),
            expert_dropout=self.experts.dropout,
            return_gates=self.return_gates,
            **self._gate_options_config(),
        )
        return config
