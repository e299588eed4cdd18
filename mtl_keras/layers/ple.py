"""PLE: Progressive Layered Extraction, a stack of Customized Gate Control levels."""

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.cgc import CGCLayer
from mtl_keras.layers.gating import ReportsGates


@register
class PLE(ReportsGates, keras.layers.Layer):
    """Progressive Layered Extraction: ``num_levels`` stacked CGC levels.

    Tang et al., RecSys 2020. Level j's task k gate reads task k's output of
    level j - 1 (the input x at level 1); every level but the last has a shared
    gate whose output feeds the next level's shared experts and gates.

    Args:
        num_levels: number of CGC levels (>= 1); the last is ``is_last_level``.
        num_tasks, num_task_experts, num_shared_experts, expert_units,
        expert_activation, expert_dropout, gate_temperature,
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, gate, k, entropy_penalty, balance_penalty,
        balance_form: as in ``CGCLayer``, for every level.
        return_gates: also return a list with each level's gates (see
            ``CGCLayer``).

    Input shape:
        ``[B, D]``.
    Output shape:
        a list of num_tasks tensors ``[B, expert_units[-1]]``.

    Example:
    >>> ple = PLE(num_levels=2, num_tasks=2, num_task_experts=1,
    ...           num_shared_experts=1, expert_units=8)
    >>> [o.shape for o in ple(tf.zeros([3, 5]))]
    [TensorShape([3, 8]), TensorShape([3, 8])]
    """

    def __init__(
        self,
        num_levels,
        num_tasks,
        num_task_experts,
        num_shared_experts,
        expert_units,
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
        self.num_levels = checks.positive_int("num_levels", num_levels)
        kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )
        self.return_gates = bool(return_gates)
        self.levels = [
            CGCLayer(
                num_tasks,
                num_task_experts,
                num_shared_experts,
                expert_units,
                is_last_level=level == num_levels - 1,
                expert_activation=expert_activation,
                expert_dropout=expert_dropout,
                gate_temperature=gate_temperature,
                name=f"cgc_{level}",
                gate=gate,
                k=k,
                entropy_penalty=entropy_penalty,
                balance_penalty=balance_penalty,
                balance_form=balance_form,
                **kernel_args,
            )
            for level in range(num_levels)
        ]

    def build(self, inputs_shape):
        inputs_shape = tf.TensorShape(inputs_shape)
        if inputs_shape.rank != 2:
            raise ValueError(f"PLE `inputs` must have shape [B, D]; got {inputs_shape}.")
        level_shape = inputs_shape
        for level in self.levels:
            level.build(level_shape)
            width = tf.TensorShape([inputs_shape[0], level.expert_units[-1]])
            level_shape = [width] * (level.num_tasks + 1)
        super().build(inputs_shape)

    def outputs_and_gates(self, inputs, training=None):
        """(the last level's outputs, every level's gates) of one call."""
        all_gates = []
        for level in self.levels:
            inputs, gates = level.outputs_and_gates(inputs, training)
            all_gates.append(gates)
        return inputs, all_gates

    def get_config(self):
        first = self.levels[0]
        config = super().get_config()
        config.update(
            num_levels=self.num_levels,
            num_tasks=first.num_tasks,
            num_task_experts=first.num_task_experts,
            num_shared_experts=first.num_shared_experts,
            expert_units=list(first.expert_units),
            expert_activation=keras.activations.serialize(first.shared_experts.activation),
            expert_dropout=first.shared_experts.dropout,
            return_gates=self.return_gates,
            **first._gate_options_config(),
        )
        return config
