"""MTAN: per-task soft attention masks over a shared trunk, fully connected form."""

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions


@register
class MTANAttention(keras.layers.Layer):
    """One level of MTAN's task-specific attention modules.

    Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019,
    with the 1x1 convolutions as Dense layers. At level j the shared trunk
    gives ``p_j`` [B, C]; task k's mask and attended feature are

    - first level: ``a_1^k = g^k(p_1)``;
    - later levels: ``a_j^k = g^k([p_j ; f(a^_{j-1}^k)])``, where
      ``f(h) = relu(h F + b_F)`` (C_prev -> C) is shared by the tasks;
    - ``g^k(z) = sigmoid(relu(z G1_k + c1_k) G2_k + c2_k)`` (-> C, per task;
      G1_k's width is ``attention_units``, the paper's C by default);
    - ``a^_j^k = a_j^k * p_j`` (element-wise).

    The paper's batch norms inside g and f are left out in this fully
    connected form; the masks and the shared extractor are as in the paper
    and its code. Per task and level g costs about (2C + C) A weights, A =
    ``attention_units``: in a convolutional net that is small next to the
    3x3 blocks, in a fully connected one it is not, so a bottleneck A < C is
    what keeps the growth per task below a column's.

    Args:
        num_tasks: T (>= 2).
        attention_units: A, the hidden width of each g; None is C (the paper).
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense``, for F, G1 and G2.

    Call arguments:
        inputs: ``[p_j]`` at the first level, or ``[p_j, a^_{j-1}^1, ...,
            a^_{j-1}^T]``: the trunk output [B, C] then the previous level's T
            attended features [B, C_prev].

    Returns:
        A list of T attended features ``[B, C]``. Training and inference
        compute the same thing (no sampling, no batch statistics).

    Example:
    >>> attention = MTANAttention(2)
    >>> first = attention([tf.ones([3, 4])])
    >>> [tuple(a.shape) for a in MTANAttention(2)([tf.ones([3, 5])] + first)]
    [(3, 5), (3, 5)]
    """

    def __init__(
        self,
        num_tasks,
        attention_units=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks, minimum=2)
        self.attention_units = None if attention_units is None else checks.positive_int(
            "attention_units", attention_units
        )
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )

    def build(self, inputs_shape):
        # tf_keras hands a one-tensor list back as the bare tensor when it revives a model
        shapes = checks.shape_list(inputs_shape) or [tf.TensorShape(inputs_shape)]
        if shapes is None or len(shapes) not in (1, 1 + self.num_tasks) or any(s.rank != 2 for s in shapes):
            raise ValueError(
                "MTANAttention `inputs` must be [trunk output] or [trunk output] + num_tasks = "
                f"{self.num_tasks} previous attended features, each [B, C]; got {inputs_shape}."
            )
        width = shapes[0][-1]
        previous = {s[-1] for s in shapes[1:]}
        if len(previous) > 1:
            raise ValueError(f"MTANAttention: the previous attended `inputs` must share one width; got {previous}.")
        self.has_previous = bool(previous)
        args, t = self.kernel_args, self.num_tasks
        fan_in = width
        if self.has_previous:
            (previous_width,) = previous
            shape = (previous_width, width)
            self.f_kernel = conventions.add_kernel(self, args, "f_kernel", shape, shape)
            self.f_bias = conventions.add_bias(self, args, "f_bias", (width,))
            fan_in = 2 * width
        hidden = self.attention_units or width
        self.g1_kernel = conventions.add_kernel(self, args, "g1_kernel", (t, fan_in, hidden), (fan_in, hidden))
        self.g1_bias = conventions.add_bias(self, args, "g1_bias", (t, hidden))
        self.g2_kernel = conventions.add_kernel(self, args, "g2_kernel", (t, hidden, width), (hidden, width))
        self.g2_bias = conventions.add_bias(self, args, "g2_bias", (t, width))
        super().build(inputs_shape)

    def call(self, inputs):
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        shared = inputs[0]
        if self.has_previous:
            extracted = [tf.nn.relu(h @ self.f_kernel + self.f_bias) for h in inputs[1:]]
            z = tf.stack([tf.concat([shared, e], axis=-1) for e in extracted])  # [T, B, 2C]
            hidden = tf.einsum("tbd,tdc->tbc", z, tf.convert_to_tensor(self.g1_kernel))
        else:
            hidden = tf.einsum("bd,tdc->tbc", shared, tf.convert_to_tensor(self.g1_kernel))
        hidden = tf.nn.relu(hidden + tf.convert_to_tensor(self.g1_bias)[:, None, :])
        logits = tf.einsum("tbc,tcd->tbd", hidden, tf.convert_to_tensor(self.g2_kernel))
        masks = tf.sigmoid(logits + tf.convert_to_tensor(self.g2_bias)[:, None, :])
        return tf.unstack(masks * shared[None], num=self.num_tasks, axis=0)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks, attention_units=self.attention_units, **conventions.serialize(self.kernel_args)
        )
        return config
