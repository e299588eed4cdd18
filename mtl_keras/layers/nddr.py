"""NDDR: layer-wise fusion of task columns by discriminative dimensionality reduction."""

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions


class FusedOutputs:
    """Mixin of the NDDR-style fusions: each task's fused sum through batch norm (else a bias), then the activation.

    ``init_outputs`` takes the layer's ``batch_norm``, ``activation``,
    ``momentum`` and ``epsilon`` (one batch norm per task, as the paper);
    ``fused_output`` finishes task t's sum; ``outputs_config`` is their part of
    ``get_config``.

    Example:
    >>> fusion = NDDR(2, batch_norm=False, activation="relu")
    >>> float(fusion.fused_output(0, tf.constant([-1.0, 2.0]), tf.constant(0.5), training=False)[1])
    2.5
    """

    def init_outputs(self, num_tasks, batch_norm, activation, momentum, epsilon):
        self.batch_norm = bool(batch_norm)
        self.activation = keras.activations.get(activation)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.norms = [
            keras.layers.BatchNormalization(momentum=self.momentum, epsilon=self.epsilon, name=f"norm_{t}")
            for t in range(num_tasks)
        ] if self.batch_norm else []

    def build_outputs(self, width):
        for norm in self.norms:
            norm.build((None, width))

    def fused_output(self, task, y, bias, training):
        """act(BN_task(y)), or act(y + bias) without batch norm."""
        y = self.norms[task](y, training=training) if self.batch_norm else y + bias
        return self.activation(y)

    def outputs_config(self):
        return dict(
            batch_norm=self.batch_norm,
            activation=keras.activations.serialize(self.activation),
            momentum=self.momentum,
            epsilon=self.epsilon,
        )


@register
class NDDR(FusedOutputs, keras.layers.Layer):
    """Neural Discriminative Dimensionality Reduction between task columns.

    Gao et al., "NDDR-CNN: Layerwise Feature Fusing in Multi-Task CNNs by
    Neural Discriminative Dimensionality Reduction", CVPR 2019. The T task
    features of one level are concatenated and reduced per task by a learnt
    projection (the paper's 1x1 convolution), then batch-normalised and
    activated:

    ``y_i = act(BN_i([x_1, ..., x_T] @ W_i))``, ``W_i`` = [W_i1; ...; W_iT], ``W_ij: C -> units``.

    The paper's initialisation puts ``diagonal * I`` in the task's own block
    W_ii and ``off_diagonal * I`` in every other block. With zero
    off-diagonal blocks the columns stay apart; with ``W_ij = alpha_ij I``
    (and no batch norm or activation) NDDR is a cross-stitch unit.

    Args:
        num_tasks: T (>= 2).
        units: output width of each task; None keeps the input width C.
        diagonal: the weight of the identity in each W_ii (paper: 0.9).
        off_diagonal: the weight of the identity in each W_ij, i != j;
            None is ``(1 - diagonal) / (T - 1)`` (paper, two tasks: 0.1).
        batch_norm: batch-normalise each task's projection (the paper does);
            without it the projection has a bias.
        activation: applied last (the paper: ReLU).
        momentum, epsilon: of the batch norms.
        kernel_initializer: None is the identity-block initialisation above.
        bias_initializer, kernel_regularizer, bias_regularizer: as
            ``keras.layers.Dense`` (the bias exists only without batch norm).

    Call arguments:
        inputs: a list of T tensors ``[B, C]``.
        training: batch statistics in training, moving statistics otherwise.

    Returns:
        A list of T tensors ``[B, units]``.

    Example:
    >>> nddr = NDDR(2)
    >>> [tuple(y.shape) for y in nddr([tf.ones([3, 4]), tf.zeros([3, 4])])]
    [(3, 4), (3, 4)]
    """

    def __init__(
        self,
        num_tasks,
        units=None,
        diagonal=0.9,
        off_diagonal=None,
        batch_norm=True,
        activation="relu",
        momentum=0.99,
        epsilon=1e-3,
        kernel_initializer=None,
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks, minimum=2)
        self.units = None if units is None else checks.positive_int("units", units)
        self.diagonal = float(diagonal)
        self.off_diagonal = (
            (1.0 - self.diagonal) / (self.num_tasks - 1) if off_diagonal is None else float(off_diagonal)
        )
        self.identity_init = kernel_initializer is None
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )
        self.init_outputs(self.num_tasks, batch_norm, activation, momentum, epsilon)

    def identity_blocks(self, width, units):
        """The paper's initial kernel [T, T * width, units]: diagonal * I in W_ii, off_diagonal * I elsewhere."""
        eye = np.eye(width, units, dtype="float32")
        return np.stack(
            [
                np.concatenate(
                    [(self.diagonal if i == j else self.off_diagonal) * eye for j in range(self.num_tasks)]
                )
                for i in range(self.num_tasks)
            ]
        )

    def build(self, inputs_shape):
        shapes = checks.shape_list(inputs_shape)
        if shapes is None or len(shapes) != self.num_tasks or any(s.rank != 2 for s in shapes):
            raise ValueError(
                f"NDDR `inputs` must be a list of num_tasks = {self.num_tasks} tensors [B, C]; got {inputs_shape}."
            )
        widths = [s[-1] for s in shapes]
        if len(set(widths)) != 1:
            raise ValueError(f"NDDR `inputs` must all have one width C; got widths {widths}.")
        width = widths[0]
        units = width if self.units is None else self.units
        shape = (self.num_tasks, self.num_tasks * width, units)
        if self.identity_init:
            self.kernel = self.add_weight(
                name="kernel", shape=shape,
                initializer=keras.initializers.Constant(self.identity_blocks(width, units)),
                regularizer=self.kernel_args["kernel_regularizer"],
            )
        else:
            self.kernel = conventions.add_kernel(self, self.kernel_args, "kernel", shape, shape[1:])
        self.bias = None
        if not self.batch_norm:
            self.bias = conventions.add_bias(self, self.kernel_args, "bias", (self.num_tasks, units))
        self.build_outputs(units)
        super().build(inputs_shape)

    def call(self, inputs, training=None):
        concatenated = tf.concat(inputs, axis=-1)  # [B, T C]
        projected = tf.einsum("bc,tcu->tbu", concatenated, tf.convert_to_tensor(self.kernel))
        return [
            self.fused_output(i, projected[i], None if self.bias is None else self.bias[i], training)
            for i in range(self.num_tasks)
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            units=self.units,
            diagonal=self.diagonal,
            off_diagonal=self.off_diagonal,
            **self.outputs_config(),
            **conventions.serialize(self.kernel_args),
        )
        if self.identity_init:
            config["kernel_initializer"] = None
        return config
