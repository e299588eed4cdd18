"""SNR: sub-network routing with hard-concrete gates and an L0 penalty."""

import math

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.pruning import PrunedAtExport


@register
class HardConcreteRouter(PrunedAtExport, keras.layers.Layer):
    """Sub-Network Routing between U lower and V upper sub-networks.

    Ma et al., "SNR: Sub-Network Routing for Flexible Parameter Sharing in
    Multi-task Learning", AAAI 2019, with the hard concrete gates of Louizos
    et al., "Learning Sparse Neural Networks through L0 Regularization",
    ICLR 2018.

    - ``mode="trans"`` (SNR-Trans): v_i = sum_j z_ij W_ij u_j, W_ij: D_j -> units.
    - ``mode="avg"`` (SNR-Avg): v_i = sum_j z_ij u_j (all D_j equal).
    - Training: one sample per route per call, u ~ U(0, 1),
      s = sigmoid((log u - log(1 - u) + log_alpha) / beta),
      z = min(1, max(0, s (zeta - gamma) + gamma)); the L0 penalty
      ``l0_penalty * sum sigmoid(log_alpha - beta log(-gamma / zeta))`` is
      added with ``add_loss``. Sampling is stateless, seeded by a step counter
      the layer owns, so it works under tf.function and XLA.
    - Inference: z_hat = min(1, max(0, sigmoid(log_alpha) (zeta - gamma) + gamma)),
      deterministic. When the gates are known values (eager, or after
      ``freeze()`` for an export), routes with z_hat == 0 are not computed.

    Args:
        num_outputs: V (>= 1).
        mode: "trans" or "avg".
        units: output width of each W_ij (required for "trans").
        beta (> 0), gamma (< 0), zeta (> 1): the hard concrete's temperature and stretch.
        l0_penalty: lambda, the weight of the L0 term.
        log_alpha_init: initial log_alpha; 0 is drop rate 0.5 (z_hat = 0.5).
        seed: salt of the sampling.
        kernel_initializer, kernel_regularizer: as ``keras.layers.Dense``
            takes them, for every W_ij ("trans"; each W_ij sees its own fans).
            The router has no biases.

    Input: a list of U tensors ``[B, D_j]``.
    Output: a list of V tensors ``[B, units]`` ("trans") or ``[B, D]`` ("avg").

    Example:
    >>> router = HardConcreteRouter(num_outputs=2, units=4)
    >>> [v.shape for v in router([tf.ones([3, 5]), tf.ones([3, 6])])]
    [TensorShape([3, 4]), TensorShape([3, 4])]
    """

    def __init__(
        self,
        num_outputs,
        mode="trans",
        units=None,
        beta=2.0 / 3.0,
        gamma=-0.1,
        zeta=1.1,
        l0_penalty=1e-4,
        log_alpha_init=0.0,
        seed=0,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_args = conventions.resolve(kernel_initializer, kernel_regularizer=kernel_regularizer)
        self.num_outputs = checks.positive_int("num_outputs", num_outputs)
        if mode not in ("trans", "avg"):
            raise ValueError(f"`mode` must be 'trans' or 'avg'; got {mode!r}.")
        if mode == "trans":
            units = checks.positive_int("units", units)
        if not beta > 0:
            raise ValueError(f"`beta` must be > 0; got {beta!r}.")
        if not gamma < 0:
            raise ValueError(f"`gamma` must be < 0; got {gamma!r}.")
        if not zeta > 1:
            raise ValueError(f"`zeta` must be > 1; got {zeta!r}.")
        if l0_penalty < 0:
            raise ValueError(f"`l0_penalty` must be >= 0; got {l0_penalty!r}.")
        self.mode, self.units = mode, units
        self.beta, self.gamma, self.zeta = float(beta), float(gamma), float(zeta)
        self.l0_penalty = float(l0_penalty)
        self.log_alpha_init = float(log_alpha_init)
        self.seed = int(seed)
        self.frozen_gates = None

    def build(self, inputs_shape):
        shapes = checks.shape_list(inputs_shape)
        if shapes is None or any(s.rank != 2 for s in shapes):
            raise ValueError(
                f"HardConcreteRouter `inputs` must be a list of [B, D_j] tensors; got {inputs_shape}."
            )
        widths = [s[-1] for s in shapes]
        if self.mode == "avg" and len(set(widths)) != 1:
            raise ValueError(
                f"HardConcreteRouter(mode='avg') needs `inputs` of one width; got widths {widths}."
            )
        self.num_inputs = len(shapes)
        self.log_alpha = self.add_weight(
            name="log_alpha",
            shape=(self.num_outputs, self.num_inputs),
            initializer=keras.initializers.Constant(self.log_alpha_init),
        )
        if self.mode == "trans":
            self.kernels = [
                conventions.add_kernel(
                    self, self.kernel_args, f"kernel_{j}", (width, self.num_outputs, self.units),
                    fans=(width, self.units),
                )
                for j, width in enumerate(widths)
            ]
        self.sample_step = self.add_weight(
            name="sample_step", shape=(), dtype="int64", initializer="zeros", trainable=False
        )
        super().build(inputs_shape)

    # -- gates -------------------------------------------------------------
    def _stretch(self, s):
        return tf.clip_by_value(s * (self.zeta - self.gamma) + self.gamma, 0.0, 1.0)

    def sample_gates(self):
        """One hard concrete sample per route [V, U]; advances the step counter."""
        step = tf.convert_to_tensor(self.sample_step)
        self.sample_step.assign_add(1)
        u = tf.random.stateless_uniform(
            [self.num_outputs, self.num_inputs],
            seed=tf.stack([step, tf.constant(self.seed, tf.int64)]),
            minval=1e-6,
            maxval=1.0 - 1e-6,
        )
        log_alpha = tf.convert_to_tensor(self.log_alpha)
        s = tf.sigmoid((tf.math.log(u) - tf.math.log(1.0 - u) + log_alpha) / self.beta)
        return self._stretch(s)

    def expected_gates(self):
        """The serving-time estimator z_hat [V, U] as a tensor."""
        return self._stretch(tf.sigmoid(tf.convert_to_tensor(self.log_alpha)))

    def serving_gates(self):
        """z_hat as a NumPy array [num_outputs, U]."""
        return np.asarray(self.expected_gates())

    def l0_norm(self):
        """sum_ij sigmoid(log_alpha_ij - beta log(-gamma / zeta)), the expected number of open routes."""
        shift = self.beta * math.log(-self.gamma / self.zeta)
        return tf.reduce_sum(tf.sigmoid(tf.convert_to_tensor(self.log_alpha) - shift))

    def freeze(self):
        """Bakes the current z_hat in as constants for inference (exports): zero routes vanish."""
        self.frozen_gates = self.serving_gates()

    def unfreeze(self):
        self.frozen_gates = None

    # -- routing -----------------------------------------------------------
    def call(self, inputs, training=None):
        if training:
            self.add_loss(self.l0_penalty * self.l0_norm())
            return self._route(inputs, self.sample_gates())
        if self.frozen_gates is not None:
            return self._route_known(inputs, self.frozen_gates)
        if tf.executing_eagerly():
            return self._route_known(inputs, self.serving_gates())
        return self._route(inputs, self.expected_gates())

    def _route(self, inputs, gates):
        """All routes, gates a [V, U] tensor."""
        outputs = 0.0
        for j, u in enumerate(inputs):
            if self.mode == "trans":
                transformed = tf.einsum("bd,dvh->bvh", u, self.kernels[j])  # every output at once
            else:
                transformed = u[:, None, :]
            outputs += transformed * gates[:, j][None, :, None]
        return tf.unstack(outputs, num=self.num_outputs, axis=1)

    def _route_known(self, inputs, gates):
        """Only the routes whose gate is not 0, gates a NumPy [V, U] array."""
        batch = tf.shape(inputs[0])[0]
        width = self.units if self.mode == "trans" else inputs[0].shape[-1]
        outputs = []
        for i in range(self.num_outputs):
            total = tf.zeros([batch, width], dtype=inputs[0].dtype)
            for j, u in enumerate(inputs):
                if gates[i, j] == 0.0:
                    continue
                route = u @ self.kernels[j][:, i, :] if self.mode == "trans" else u
                total += float(gates[i, j]) * route
            outputs.append(total)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            num_outputs=self.num_outputs,
            mode=self.mode,
            units=self.units,
            beta=self.beta,
            gamma=self.gamma,
            zeta=self.zeta,
            l0_penalty=self.l0_penalty,
            log_alpha_init=self.log_alpha_init,
            seed=self.seed,
            kernel_initializer=keras.initializers.serialize(self.kernel_args["kernel_initializer"]),
            kernel_regularizer=conventions.serialize(self.kernel_args)["kernel_regularizer"],
        )
        return config
