"""DSelect-k: a differentiable gate that selects k of n experts."""

import math

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions

EPSILON = 1e-6


def smooth_step(t, gamma):
    """S(t) = 0 for t <= -gamma/2, 1 for t >= gamma/2, else -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2."""
    cubic = -2.0 / gamma**3 * t**3 + 3.0 / (2.0 * gamma) * t + 0.5
    return tf.where(t <= -gamma / 2.0, tf.zeros_like(t), tf.where(t >= gamma / 2.0, tf.ones_like(t), cubic))


def binary_codes(num_experts):
    """[n, m] 0/1 matrix, row l the m-bit binary code of l, most significant bit first."""
    bits = max(1, math.ceil(math.log2(num_experts)))
    return np.array([[(l >> (bits - 1 - j)) & 1 for j in range(bits)] for l in range(num_experts)], "float32")


@register
class DSelectKGate(keras.layers.Layer):
    """DSelect-k gate: mixture weights over n experts with at most k non-zeros.

    Hazimeh et al., "DSelect-k: Differentiable Selection in the Mixture of
    Experts with Applications to Multi-Task Learning", NeurIPS 2021. With
    m = ceil(log2 n) and the smooth step S (width ``gamma``), each of the k
    single-expert selectors i has z_i in R^m and
    ``r_i[l] = prod_j (S(z_ij) if bit j of l is 1 else 1 - S(z_ij))``
    (l = 0..n-1, binary codes most significant bit first); the gate is
    ``sum_i softmax(w / temperature)_i r_i``. Once every z_ij is outside
    (-gamma/2, gamma/2) each r_i is one-hot: the gate selects at most k experts.
    ``per_example=True``: z = W_z x + b_z, w = W_w x + b_w (the paper's
    example-conditioned gate, the MoE form); False: z and w are parameters
    (task-only conditioning, the paper's static gate, which an export can prune).

    Training adds ``entropy_penalty * mean_b sum_i H(r_i)`` (the paper's
    entropy regulariser, which drives the selectors to one-hot); the authors'
    code sums over the batch, we average so the coefficient does not depend on
    the batch size. When n is not a power of 2, codes n..2^m-1 are unreachable
    and ``mean_b sum_i 1 / sum_l r_i[l]`` is added, as in the authors' code,
    so a selector cannot put its mass there.

    Args:
        num_experts: n (>= 2).
        k: number of selectors, at most ``num_experts``.
        gamma: width of the smooth step's cubic part (> 0).
        entropy_penalty: coefficient of the entropy regulariser (>= 0).
        per_example: example-conditioned (True) or static (False) gate.
        temperature: softmax temperature of the selector weights w (> 0).
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense``, for z's and w's
            weights (``mtl_keras.layers.conventions``); None initializers are
            the authors' U(-gamma/100, gamma/100) for z and U(-0.05, 0.05) for
            w, which start every selector inside the smooth step.

    Call arguments:
        inputs: ``[B, D]`` (the static gate reads only the batch size).
        training: adds the regularisers.

    Output shape: ``[B, num_experts]``, non-negative.

    Example:
    >>> gate = DSelectKGate(num_experts=4, k=2)
    >>> gate(tf.ones([3, 5])).shape
    TensorShape([3, 4])
    """

    def __init__(
        self,
        num_experts,
        k=2,
        gamma=1.0,
        entropy_penalty=1e-3,
        per_example=True,
        temperature=1.0,
        kernel_initializer=None,
        bias_initializer=None,
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = checks.positive_int("num_experts", num_experts, minimum=2)
        self.k = checks.positive_int("k", k)
        if self.k > self.num_experts:
            raise ValueError(f"`k` must be at most num_experts = {self.num_experts}; got {k!r}.")
        self.gamma = checks.positive_float("gamma", gamma)
        if not float(entropy_penalty) >= 0.0:
            raise ValueError(f"`entropy_penalty` must be >= 0; got {entropy_penalty!r}.")
        self.entropy_penalty = float(entropy_penalty)
        self.per_example = bool(per_example)
        self.temperature = checks.positive_float("temperature", temperature)
        self.initializers = (kernel_initializer, bias_initializer)
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )
        self.codes = binary_codes(self.num_experts)
        self.bits = self.codes.shape[1]

    def build(self, inputs_shape):
        inputs_shape = tf.TensorShape(inputs_shape)
        if inputs_shape.rank != 2:
            raise ValueError(f"DSelectKGate `inputs` must have shape [B, D]; got {inputs_shape}.")
        z_shape, w_shape = (self.k * self.bits,), (self.k,)
        if self.per_example:
            width = inputs_shape[-1]
            self.z_kernel = self._weight("z_kernel", (width, z_shape[0]), "kernel", self.gamma / 100.0)
            self.w_kernel = self._weight("w_kernel", (width, self.k), "kernel", 0.05)
        self.z_bias = self._weight("z_bias", z_shape, "bias", self.gamma / 100.0)
        self.w_bias = self._weight("w_bias", w_shape, "bias", 0.05)
        super().build(inputs_shape)

    def _weight(self, name, shape, kind, limit):
        given = self.initializers[0 if kind == "kernel" else 1]
        args = dict(self.kernel_args)
        if given is None:
            args[f"{kind}_initializer"] = keras.initializers.RandomUniform(-limit, limit)
        if kind == "kernel":
            return conventions.add_kernel(self, args, name, shape, shape)
        return conventions.add_bias(self, args, name, shape)

    def selectors(self, inputs):
        """(selector outputs r [B, k, n], selector weights softmax(w / temperature) [B, k])."""
        batch = tf.shape(inputs)[0]
        if self.per_example:
            z = tf.matmul(inputs, self.z_kernel) + self.z_bias
            w = tf.matmul(inputs, self.w_kernel) + self.w_bias
        else:
            z = tf.tile(tf.convert_to_tensor(self.z_bias)[None], [batch, 1])
            w = tf.tile(tf.convert_to_tensor(self.w_bias)[None], [batch, 1])
        steps = smooth_step(tf.reshape(z, [-1, self.k, 1, self.bits]), self.gamma)  # [B, k, 1, m]
        codes = tf.constant(self.codes)  # [n, m]
        selected = tf.reduce_prod(codes * steps + (1.0 - codes) * (1.0 - steps), axis=-1)  # [B, k, n]
        return selected, tf.nn.softmax(w / self.temperature, axis=-1)

    def call(self, inputs, training=None):
        selected, weights = self.selectors(inputs)
        if training:
            self.add_loss(self.regularization(selected))
        return tf.reduce_sum(weights[:, :, None] * selected, axis=1)

    def regularization(self, selected):
        """The entropy term, plus the unreachable-code term when n is not a power of 2."""
        entropy = -tf.reduce_sum(selected * tf.math.log(selected + EPSILON), axis=[1, 2])
        total = self.entropy_penalty * tf.reduce_mean(entropy)
        if self.num_experts != 2**self.bits:
            total += tf.reduce_mean(tf.reduce_sum(1.0 / tf.reduce_sum(selected, axis=-1), axis=-1))
        return total

    def static_weights(self):
        """The static gate's weights as a NumPy array [n] (``per_example=False`` only)."""
        if self.per_example:
            raise ValueError("DSelectKGate.static_weights needs `per_example=False`.")
        return np.asarray(self(tf.zeros([1, 1]))[0])

    def get_config(self):
        config = super().get_config()
        serialized = conventions.serialize(self.kernel_args)
        config.update(
            num_experts=self.num_experts,
            k=self.k,
            gamma=self.gamma,
            entropy_penalty=self.entropy_penalty,
            per_example=self.per_example,
            temperature=self.temperature,
            kernel_initializer=serialized["kernel_initializer"] if self.initializers[0] is not None else None,
            bias_initializer=serialized["bias_initializer"] if self.initializers[1] is not None else None,
            kernel_regularizer=serialized["kernel_regularizer"],
            bias_regularizer=serialized["bias_regularizer"],
        )
        return config


GATES = ("softmax", "dselect_k", "dselect_k_static")


def make_gates(gate, count, num_experts, k, entropy_penalty, temperature, kernel_args, prefix):
    """None for ``gate="softmax"`` (the owner's own softmax weights), else ``count`` DSelect-k gates
    over ``num_experts`` (``"dselect_k_static"``: task-only conditioning). They take the
    regularizers of ``kernel_args`` and keep the authors' initialisation."""
    if gate not in GATES:
        raise ValueError(f"`gate` must be one of {GATES}; got {gate!r}.")
    if gate == "softmax":
        return None
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_experts:
        raise ValueError(f"`k` must be an integer in [1, {num_experts}] (the experts a gate sees); got {k!r}.")
    return [
        DSelectKGate(
            num_experts, k, entropy_penalty=entropy_penalty, per_example=gate == "dselect_k",
            temperature=temperature, kernel_regularizer=kernel_args["kernel_regularizer"],
            bias_regularizer=kernel_args["bias_regularizer"], name=f"{prefix}_{index}",
        )
        for index in range(count)
    ]
