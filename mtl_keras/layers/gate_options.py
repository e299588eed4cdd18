"""The gate options MMoE and CGC share: softmax or DSelect-k, temperature, balance loss, pruning."""

import numpy as np

from mtl_keras.backend import tf
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.balance import balance_loss, check_balance
from mtl_keras.layers.dselect_k import make_gates
from mtl_keras.layers.gating import gate_probabilities


class GateOptions:
    """Mixin for a mixture-of-experts layer whose gates take ``ExpertGate``'s options.

    ``gate`` ("softmax", "dselect_k", "dselect_k_static"), ``k``,
    ``entropy_penalty``, ``gate_temperature``, ``balance_penalty``,
    ``balance_form`` and the Keras initializer and regularizer arguments are
    checked, evaluated and serialized here once, whatever the layer's expert
    layout (``ExpertGate``: one stack; ``CGCLayer``: a stack per task and a
    shared one). The layer owns its gates: the softmax gates' weights
    (``gating.add_gates``) or the ``DSelectKGate`` layers ``_dselect_gates``
    makes.

    Example:
    >>> from mtl_keras.layers import ExpertGate
    >>> ExpertGate(3, 4, 2, gate="dselect_k_static", k=1)._gate_options_config()["gate"]
    'dselect_k_static'
    """

    def _init_gate_options(
        self, gate, k, entropy_penalty, gate_temperature, balance_penalty, balance_form,
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
    ):
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )
        self.balance_penalty, self.balance_form = check_balance(balance_penalty, balance_form)
        self.gate_temperature = checks.positive_float("gate_temperature", gate_temperature)
        self.gate, self.k, self.entropy_penalty = gate, k, float(entropy_penalty)

    def _dselect_gates(self, count, num_experts, prefix):
        """``count`` DSelect-k gates over ``num_experts``, or None for softmax gates."""
        return make_gates(
            self.gate, count, num_experts, self.k, self.entropy_penalty, self.gate_temperature,
            self.kernel_args, prefix,
        )

    def _probabilities(self, dselect_gates, inputs, kernels, biases, training=None):
        """Each gate's weights [B, n]: the DSelect-k gates when there are some, else
        softmax((x W + b) / temperature). ``inputs``: one tensor, or one per gate."""
        if dselect_gates is None:
            return gate_probabilities(inputs, kernels, biases, self.gate_temperature)
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs] * len(dselect_gates)
        return [gate(x, training=training) for gate, x in zip(dselect_gates, inputs)]

    def _add_balance_loss(self, gates, training):
        if training and self.balance_penalty:
            self.add_loss(self.balance_penalty * tf.add_n([balance_loss(g, self.balance_form) for g in gates]))

    def _converged_selection(self, dselect_gates):
        """The weights (each [n_g]) of static DSelect-k gates that each select at most k
        experts (what an export may bake in), else None."""
        if self.gate != "dselect_k_static":
            return None
        weights = [gate.static_weights() for gate in dselect_gates]
        return weights if all(np.count_nonzero(row) <= self.k for row in weights) else None

    def _gate_options_config(self):
        return dict(
            gate_temperature=self.gate_temperature,
            gate=self.gate,
            k=self.k,
            entropy_penalty=self.entropy_penalty,
            balance_penalty=self.balance_penalty,
            balance_form=self.balance_form,
            **conventions.serialize(self.kernel_args),
        )


def constant_gates(weights, like):
    """The NumPy ``weights`` as constants repeated along a new batch axis: [B, *weights.shape],
    with the batch size and dtype of ``like`` (frozen gates in an export)."""
    weights = tf.constant(weights, like.dtype)
    return tf.broadcast_to(weights[None], tf.concat([tf.shape(like)[:1], tf.shape(weights)], 0))
