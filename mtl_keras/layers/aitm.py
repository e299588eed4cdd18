"""AITM: adaptive information transfer along a conversion funnel, and its calibrator."""

import math

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions


@register
class InformationTransfer(keras.layers.Layer):
    """The Adaptive Information Transfer (AIT) module of AITM.

    Xi et al., "Modeling the Sequential Dependence among Audience Multi-step
    Conversions with Multi-task Learning in Targeted Display Advertising",
    KDD 2021. With q_t task t's own representation and p_{t-1} the information
    transferred from step t - 1 (both ``[B, d]``):
    ``z_t = sum_{u in {q_t, p_{t-1}}} w_u h1(u)``,
    ``w_u = softmax_u(<h2(u), h3(u)> / sqrt(d))``, with h1, h2, h3 linear maps
    ``d -> d`` without bias (value, query and key).

    Args:
        kernel_initializer, kernel_regularizer: as ``keras.layers.Dense``,
            for h1, h2, h3 (``mtl_keras.layers.conventions``).

    Call arguments:
        inputs: a list ``[q_t, p_{t-1}]`` of two ``[B, d]`` tensors.

    Output shape: ``[B, d]``.

    Example:
    >>> ait = InformationTransfer()
    >>> ait([tf.ones([3, 4]), tf.zeros([3, 4])]).shape
    TensorShape([3, 4])
    """

    def __init__(self, kernel_initializer="glorot_uniform", kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_args = conventions.resolve(kernel_initializer, kernel_regularizer=kernel_regularizer)

    def build(self, inputs_shape):
        shapes = checks.shape_list(inputs_shape)
        if shapes is None or len(shapes) != 2 or any(s.rank != 2 for s in shapes) or shapes[0][-1] != shapes[1][-1]:
            raise ValueError(
                "InformationTransfer `inputs` must be a list [q_t, p_{t-1}] of two [B, d] tensors of one "
                f"width; got {inputs_shape}."
            )
        width = shapes[0][-1]
        self.value, self.query, self.key = (
            conventions.add_kernel(self, self.kernel_args, name, (width, width), (width, width))
            for name in ("value_kernel", "query_kernel", "key_kernel")
        )
        super().build(inputs_shape)

    def call(self, inputs):
        width = inputs[0].shape[-1]
        # One [2B, d] x [d, 3d] GEMM for the three maps. A [B, 2, d] x [d, d] broadcast matmul would
        # take its kernel gradient as B per-row [d, d] products summed ([B, d, d] in memory): 7x
        # slower steps at d = 256, batch 1024 (benchmarks/throughput.py, aitm/large).
        rows = tf.concat(inputs, axis=0)  # [q_t; p_{t-1}]: [2B, d]
        kernel = tf.concat([self.query, self.key, self.value], axis=1)
        query, key, value = tf.split(tf.matmul(rows, kernel), 3, axis=1)
        query, key, value = (tf.stack(tf.split(m, 2, axis=0), axis=1) for m in (query, key, value))  # [B, 2, d]
        scores = tf.reduce_sum(query * key, axis=-1) / math.sqrt(width)  # [B, 2]
        weights = tf.nn.softmax(scores, axis=1)
        return tf.reduce_sum(weights[:, :, None] * value, axis=1)

    def get_config(self):
        config = super().get_config()
        serialized = conventions.serialize(self.kernel_args)
        config.update(
            kernel_initializer=serialized["kernel_initializer"],
            kernel_regularizer=serialized["kernel_regularizer"],
        )
        return config


@register
class FunnelCalibration(keras.layers.Layer):
    """AITM's behavioural expectation calibrator, a loss term on a funnel's predictions.

    Xi et al., KDD 2021: a later step's probability should not exceed an
    earlier one's; training adds
    ``weight * mean_b sum_{t>=2} max(y_t - y_{t-1}, 0)`` with ``add_loss``.
    As in the paper it is a loss term, not a clamp: the predictions pass
    through unchanged.

    Args:
        weight: the coefficient alpha (>= 0; the authors' code uses 0.6).

    Call arguments:
        inputs: a list of T >= 2 tensors ``[B, 1]``, in funnel order.
        training: adds the loss.

    Output: the same list.

    Example:
    >>> calibration = FunnelCalibration(weight=0.6)
    >>> _ = calibration([tf.fill([2, 1], 0.2), tf.fill([2, 1], 0.5)], training=True)
    >>> round(float(calibration.losses[0]), 6)
    0.18
    """

    def __init__(self, weight=0.6, **kwargs):
        super().__init__(**kwargs)
        if not float(weight) >= 0.0:
            raise ValueError(f"`weight` must be >= 0; got {weight!r}.")
        self.weight = float(weight)

    def call(self, inputs, training=None):
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError("FunnelCalibration `inputs` must be a list of two or more [B, 1] predictions.")
        if training:
            excess = [tf.nn.relu(later - earlier) for earlier, later in zip(inputs[:-1], inputs[1:])]
            self.add_loss(self.weight * tf.reduce_mean(tf.add_n([tf.reduce_sum(e, axis=-1) for e in excess])))
        return [tf.identity(x) for x in inputs]

    @staticmethod
    def violation_share(predictions):
        """The share of rows where some later step's prediction exceeds the one before it.

        Example:
        >>> FunnelCalibration.violation_share([np.array([0.5, 0.2]), np.array([0.4, 0.3])])
        0.5
        """
        steps = np.stack([np.reshape(np.asarray(p), [-1]) for p in predictions], axis=1)
        return float(np.mean(np.any(steps[:, 1:] > steps[:, :-1], axis=1)))

    def get_config(self):
        config = super().get_config()
        config["weight"] = self.weight
        return config
