"""The batched expert stack that MMoE and CGC share."""

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.representation import RecordsRepresentation


@register
class ExpertStack(RecordsRepresentation, keras.layers.Layer):
    """``num_experts`` feed-forward experts held as one weight tensor per depth.

    Each expert is an MLP with hidden sizes ``units``; expert ``e`` of layer
    ``l`` uses ``kernels[l][e]`` ([in, units[l]]) and ``biases[l][e]``. All
    experts run in one batched matmul per layer instead of a Python loop of
    ``Dense`` layers, which is what makes MMoE/PLE fast on CPU and GPU alike.

    Args:
        num_experts: number of experts E (>= 1).
        units: int or tuple of ints, the hidden sizes of every expert.
        activation: activation after every expert layer.
        dropout: dropout rate after every expert layer (training only).
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense`` takes them, for every
            expert (``mtl_keras.layers.conventions``); a variance-scaling
            initializer (the default Glorot) sees one expert's fans.

    Input shape:
        ``[B, D]``: every expert reads the same input.

    Output shape:
        ``[B, E, units[-1]]``.

    Example:
    >>> stack = ExpertStack(num_experts=4, units=(8,))
    >>> stack(tf.zeros([2, 5])).shape
    TensorShape([2, 4, 8])
    """

    def __init__(
        self,
        num_experts,
        units,
        activation="relu",
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )
        self.num_experts = checks.positive_int("num_experts", num_experts)
        self.units = checks.units("units", units)
        self.activation = keras.activations.get(activation)
        self.dropout = checks.rate("dropout", dropout)
        self.dropout_layer = keras.layers.Dropout(self.dropout) if self.dropout else None

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        if input_shape.rank != 2 or input_shape[-1] is None:
            raise ValueError(
                f"ExpertStack `inputs` must have shape [B, D] with a known D; got {input_shape}."
            )
        self.kernels, self.biases = [], []
        fan_in = input_shape[-1]
        for depth, fan_out in enumerate(self.units):
            # Fans of one expert, not of the [E, in, out] block.
            self.kernels.append(
                conventions.add_kernel(
                    self, self.kernel_args, f"kernel_{depth}", (self.num_experts, fan_in, fan_out),
                    fans=(fan_in, fan_out),
                )
            )
            self.biases.append(
                conventions.add_bias(self, self.kernel_args, f"bias_{depth}", (self.num_experts, fan_out))
            )
            fan_in = fan_out
        super().build(input_shape)

    def call(self, inputs, training=None):
        return self._from_first_layer(first_layer(inputs, self.kernels[0], training), training)

    def subset(self, inputs, indices):
        """The inference output of the experts ``indices`` only, [B, len(indices), units[-1]]:
        only their weights are read and only their products computed (an export of a gate
        that selects a few experts)."""
        indices = tf.constant(list(indices), tf.int32)
        hidden = first_layer(inputs, tf.gather(self.kernels[0], indices))
        for depth in range(len(self.units)):
            if depth:
                hidden = tf.einsum("beh,ehk->bek", hidden, tf.gather(self.kernels[depth], indices))
            hidden = self.activation(hidden + tf.gather(self.biases[depth], indices))
        return self._record(hidden)

    def _from_first_layer(self, hidden, training):
        """The stack's output from its first layer's product ``[B, E, units[0]]`` (no bias yet)."""
        for depth in range(len(self.units)):
            if depth:
                hidden = tf.einsum("beh,ehk->bek", hidden, self.kernels[depth])
            hidden = self.activation(hidden + self.biases[depth])
            if self.dropout_layer is not None:
                hidden = self.dropout_layer(hidden, training=training)
        return self._record(hidden)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_experts=self.num_experts,
            units=list(self.units),
            activation=keras.activations.serialize(self.activation),
            dropout=self.dropout,
            **conventions.serialize(self.kernel_args),
        )
        return config


def first_layer(inputs, kernel, training=None):
    """``[B, D] x [E, D, H] -> [B, E, H]``, every expert reading the same input.

    Training: one [B, D] x [D, E H] GEMM on the kernel laid out [D, E, H], so the
    backward pass is two plain GEMMs too; the broadcast matmul's gradients ran at
    half the forward's rate (a PLE step at d = 256, 10 experts a level, batch
    1024: 116 -> 70 ms without XLA, 95 -> 85 ms with it; MMoE 52 -> 40 / 25 -> 25).
    Inference: a broadcast matmul to [E, B, H], then [B, E, H], which reads the
    kernel in place: re-laying out the whole kernel on every call dominates at
    serving batch sizes (docs/benchmarks.md, "Why the defaults").
    """
    if training:
        experts, depth, units = kernel.shape
        flat = tf.reshape(tf.transpose(kernel, [1, 0, 2]), [depth, experts * units])
        return tf.reshape(tf.matmul(inputs, flat), [-1, experts, units])
    return tf.transpose(tf.matmul(inputs[None], kernel), [1, 0, 2])


def call_stacks(stacks, inputs, training=None):
    """The outputs of expert stacks that all read ``inputs`` [B, D], their first
    layers run as one matmul over every stack's experts (PLE's first level: each
    task's stack and the shared one read the features)."""
    if len(stacks) == 1:
        return [stacks[0](inputs, training=training)]
    # tf.convert_to_tensor: tf.concat rejects Keras 3 variables; it keeps their autocast.
    kernel = tf.concat([tf.convert_to_tensor(s.kernels[0]) for s in stacks], axis=0)
    parts = tf.split(first_layer(inputs, kernel, training), [s.num_experts for s in stacks], axis=1)
    return [stack._from_first_layer(part, training) for stack, part in zip(stacks, parts)]
