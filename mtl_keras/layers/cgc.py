"""PLE's Customized Gate Control: one level of task and shared experts with their gates."""

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks
from mtl_keras.layers.experts import ExpertStack, call_stacks
from mtl_keras.layers.gate_options import GateOptions, constant_gates
from mtl_keras.layers.gating import ReportsGates, add_gates
from mtl_keras.layers.pruning import PrunedAtExport


@register
class CGCLayer(GateOptions, PrunedAtExport, ReportsGates, keras.layers.Layer):
    """Customized Gate Control, one level of Progressive Layered Extraction.

    Tang et al., "Progressive Layered Extraction (PLE): A Novel Multi-Task
    Learning (MTL) Model for Personalized Recommendations", RecSys 2020.
    Task k's gate ``g^k(x) = softmax(W_g^k x)`` mixes the stack
    ``S^k(x) = [task k's experts; the shared experts]``. Below the last level a
    shared gate over *all* experts of the level (every task's and the shared
    ones) reads the shared input and produces the shared output.

    With ``gate="dselect_k_static"``, once every gate of the level selects at
    most k experts, ``freeze()`` (which ``export_saved_model`` calls) makes
    inference calls compute only the experts some gate selected, task-specific
    and shared, a stack no gate selected not at all, with the gates as
    constants; outputs and gates are those of the unfrozen level. The stacks
    then record the selected experts' outputs only; fast projections read
    training calls, which never take that path.

    Args:
        num_tasks: number of tasks T (>= 1).
        num_task_experts: experts per task m_t (>= 1).
        num_shared_experts: shared experts m_s (>= 1).
        expert_units: int or tuple of ints; hidden sizes of every expert.
        is_last_level: without the shared gate, returning T tensors; else
            T + 1 tensors (the last is the shared output).
        expert_activation: activation of the expert layers.
        expert_dropout: dropout after every expert layer (training only).
        return_gates: also return the gate weights.
        gate_temperature: softmax temperature of every gate (> 0).
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense`` takes them, for the
            experts and the gates (``mtl_keras.layers.conventions``).
        gate, k, entropy_penalty: as in ``ExpertGate``: "dselect_k" or
            "dselect_k_static" makes every gate of the level a
            ``DSelectKGate`` selecting at most k of the experts it sees.
        balance_penalty, balance_form: as in ``ExpertGate``, for every gate of
            the level (a task gate over the experts it sees).

    Input shape:
        One tensor ``[B, D]`` (first level: every gate and expert reads it),
        or a list of T + 1 tensors (task 1..T inputs ``[B, D]``, then the
        shared input ``[B, D_s]``) from a previous level.

    Output shape:
        A list of T (last level) or T + 1 tensors ``[B, expert_units[-1]]``.
        With ``return_gates``, ``(outputs, gates)``: gates is
        ``[B, G, T * m_t + m_s]`` with G = T gates (+ 1 shared gate below the
        last level) over all experts of the level, ordered task 1's experts,
        ..., task T's, then the shared ones; a task gate is 0 on the experts it
        does not see, and every row sums to 1.

    Example:
    >>> cgc = CGCLayer(num_tasks=2, num_task_experts=1, num_shared_experts=2, expert_units=8)
    >>> [o.shape for o in cgc(tf.zeros([3, 5]))]
    [TensorShape([3, 8]), TensorShape([3, 8])]
    """

    def __init__(
        self,
        num_tasks,
        num_task_experts,
        num_shared_experts,
        expert_units,
        is_last_level=True,
        expert_activation="relu",
        expert_dropout=0.0,
        return_gates=False,
        gate_temperature=1.0,
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
        self.num_tasks = checks.positive_int("num_tasks", num_tasks)
        self.num_task_experts = checks.positive_int("num_task_experts", num_task_experts)
        self.num_shared_experts = checks.positive_int("num_shared_experts", num_shared_experts)
        self.expert_units = checks.units("expert_units", expert_units)
        self.is_last_level = bool(is_last_level)
        self.return_gates = bool(return_gates)
        # One stack per task: a task's experts are then its own variables,
        # reached by its output only, never counted as shared.
        self.task_experts = [
            ExpertStack(
                num_task_experts,
                self.expert_units,
                expert_activation,
                expert_dropout,
                name=f"task_experts_{t}",
                **self.kernel_args,
            )
            for t in range(num_tasks)
        ]
        self.shared_experts = ExpertStack(
            num_shared_experts,
            self.expert_units,
            expert_activation,
            expert_dropout,
            name="shared_experts",
            **self.kernel_args,
        )
        self.task_dselect_gates = self._dselect_gates(
            num_tasks, num_task_experts + num_shared_experts, "task_dselect_k"
        )
        self.shared_dselect_gates = None
        if not self.is_last_level and self.task_dselect_gates is not None:
            self.shared_dselect_gates = self._dselect_gates(1, self._num_level_experts, "shared_dselect_k")
        # Softmax gates' weights, made in build; DSelect-k gates are layers of their own.
        self.task_gate_kernels = self.task_gate_biases = None
        self.shared_gate_kernels = self.shared_gate_biases = None
        self.frozen = None

    def _split_shapes(self, inputs_shape):
        """(task input shape, shared input shape) from one shape or T + 1 of them."""
        shapes = checks.shape_list(inputs_shape)
        if shapes is not None:
            if len(shapes) != self.num_tasks + 1:
                raise ValueError(
                    f"CGCLayer `inputs` must be one tensor or a list of num_tasks + 1 = "
                    f"{self.num_tasks + 1} tensors (task inputs, then the shared input); "
                    f"got a list of {len(shapes)}."
                )
            if any(s.rank != 2 for s in shapes):
                raise ValueError(
                    f"CGCLayer `inputs` must all have shape [B, D]; got {[str(s) for s in shapes]}."
                )
            task_dims = {s[-1] for s in shapes[:-1]}
            if len(task_dims) != 1:
                raise ValueError(
                    f"CGCLayer task `inputs` must share one width D; got widths {sorted(task_dims)}."
                )
            return shapes[0], shapes[-1]
        shape = tf.TensorShape(inputs_shape)
        if shape.rank != 2:
            raise ValueError(f"CGCLayer `inputs` must have shape [B, D]; got {shape}.")
        return shape, shape

    def build(self, inputs_shape):
        task_shape, shared_shape = self._split_shapes(inputs_shape)
        for stack in self.task_experts:
            stack.build(task_shape)
        self.shared_experts.build(shared_shape)
        if self.task_dselect_gates is not None:
            for gate in self.task_dselect_gates:
                gate.build(task_shape)
            for gate in self.shared_dselect_gates or []:
                gate.build(shared_shape)
            super().build(inputs_shape)
            return
        self.task_gate_kernels, self.task_gate_biases = add_gates(
            self,
            "task_gate",
            self.num_tasks,
            task_shape[-1],
            self.num_task_experts + self.num_shared_experts,
            self.kernel_args,
        )
        if not self.is_last_level:
            self.shared_gate_kernels, self.shared_gate_biases = add_gates(
                self, "shared_gate", 1, shared_shape[-1], self._num_level_experts, self.kernel_args
            )
        super().build(inputs_shape)

    @property
    def _num_level_experts(self):
        return self.num_tasks * self.num_task_experts + self.num_shared_experts

    def outputs_and_gates(self, inputs, training=None):
        """(outputs, gates) of one call of this built level; ``call`` returns one or both,
        and PLE chains its levels through it."""
        if isinstance(inputs, (list, tuple)):
            self._split_shapes([x.shape for x in inputs])
            task_inputs, shared_input = list(inputs[:-1]), inputs[-1]
        else:
            self._split_shapes(inputs.shape)
            task_inputs, shared_input = [inputs] * self.num_tasks, inputs
        if self.frozen is not None and not training:
            return self._frozen_outputs(task_inputs, shared_input)
        if isinstance(inputs, (list, tuple)):
            task_out = [  # T x [B, m_t, H]
                stack(x, training=training) for stack, x in zip(self.task_experts, task_inputs)
            ]
            shared_out = self.shared_experts(shared_input, training=training)  # [B, m_s, H]
        else:
            # One input for every stack: their first layers as one matmul.
            *task_out, shared_out = call_stacks(self.task_experts + [self.shared_experts], inputs, training)
        gates = self._task_gates(task_inputs, training)
        # Each stack mixed apart and the parts summed: no [B, m_t + m_s, H] concatenations.
        m_t = self.num_task_experts
        shared = self.shared_experts
        outputs = [
            stack.mix(gate[:, :m_t], own) + shared.mix(gate[:, m_t:], shared_out)
            for stack, gate, own in zip(self.task_experts, gates, task_out)
        ]
        level_gates = [self._spread(t, gate) for t, gate in enumerate(gates)]
        if not self.is_last_level:
            shared_gate = self._shared_gate(shared_input, training)
            parts = [
                stack.mix(shared_gate[:, t * m_t : (t + 1) * m_t], own)
                for t, (stack, own) in enumerate(zip(self.task_experts, task_out))
            ]
            outputs.append(tf.add_n(parts + [shared.mix(shared_gate[:, self.num_tasks * m_t :], shared_out)]))
            level_gates.append(shared_gate)
            gates = gates + [shared_gate]
        self._add_balance_loss(gates, training)
        return outputs, tf.stack(level_gates, axis=1)

    def _task_gates(self, task_inputs, training):
        return self._probabilities(
            self.task_dselect_gates, task_inputs, self.task_gate_kernels, self.task_gate_biases, training
        )

    def _shared_gate(self, shared_input, training):
        return self._probabilities(
            self.shared_dselect_gates, shared_input, self.shared_gate_kernels, self.shared_gate_biases, training
        )[0]

    def freeze(self):
        """For an export: when every gate of the level is a static DSelect-k gate with at most
        k non-zero weights, later inference calls compute only the experts some gate selected,
        the gates as constants (their level layout, ``[G, T * m_t + m_s]``). Otherwise nothing
        changes."""
        weights = self._converged_selection((self.task_dselect_gates or []) + (self.shared_dselect_gates or []))
        if weights is None or not any(row.any() for row in weights):  # a level selecting nothing stays
            self.frozen = None
            return
        task_rows = [np.asarray(self._spread(t, row[None]))[0] for t, row in enumerate(weights[: self.num_tasks])]
        self.frozen = np.stack(task_rows + weights[self.num_tasks :])  # [G, T * m_t + m_s]

    def unfreeze(self):
        self.frozen = None

    def _frozen_outputs(self, task_inputs, shared_input):
        """(outputs, gates) from the selected experts alone, each stack's apart."""
        selected = self.frozen.any(axis=0)
        stacks = self.task_experts + [self.shared_experts]
        firsts = [t * self.num_task_experts for t in range(self.num_tasks + 1)]  # level column of each stack
        parts = []  # (level columns, stack, outputs of those experts) of each stack a gate selected from
        for stack, x, first in zip(stacks, task_inputs + [shared_input], firsts):
            columns = first + np.flatnonzero(selected[first : first + stack.num_experts])
            if columns.size:
                parts.append((columns, stack, stack.subset(x, columns - first)))
        outputs = [
            tf.add_n([stack.mix(constant_gates(row[columns], own), own) for columns, stack, own in parts])
            for row in self.frozen
        ]
        return outputs, constant_gates(self.frozen, outputs[0])

    def _spread(self, task, gate):
        """Task ``task``'s gate [B, m_t + m_s] over all experts of the level, 0 elsewhere."""
        m_t = self.num_task_experts
        before = task * m_t
        after = (self.num_tasks - task - 1) * m_t
        own = tf.pad(gate[:, :m_t], [[0, 0], [before, after]])
        return tf.concat([own, gate[:, m_t:]], axis=1)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            num_task_experts=self.num_task_experts,
            num_shared_experts=self.num_shared_experts,
            expert_units=list(self.expert_units),
            is_last_level=self.is_last_level,
            expert_activation=keras.activations.serialize(self.shared_experts.activation),
            expert_dropout=self.shared_experts.dropout,
            return_gates=self.return_gates,
            **self._gate_options_config(),
        )
        return config
