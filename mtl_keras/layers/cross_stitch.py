"""Cross-stitch units: learned linear mixing of task-specific activations."""

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks


@register
class CrossStitch(keras.layers.Layer):
    """Cross-stitch unit.

    Misra et al., "Cross-stitch Networks for Multi-task Learning", CVPR 2016.
    x~_i = sum_j alpha_ij x_j with a learnable [T, T] alpha, initialised to
    alpha_ii = 0.9 and alpha_ij = 0.1 / (T - 1).

    Args:
        num_tasks: T (>= 2).

    Input: a list of T tensors of one shape ``[B, ...]``.
    Output: a list of T tensors of that shape.

    Example:
    >>> stitch = CrossStitch(2)
    >>> [o.shape for o in stitch([tf.ones([3, 4]), tf.zeros([3, 4])])]
    [TensorShape([3, 4]), TensorShape([3, 4])]
    """

    def __init__(self, num_tasks, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks, minimum=2)

    def build(self, inputs_shape):
        shapes = checks.shape_list(inputs_shape)
        if shapes is None or len(shapes) != self.num_tasks:
            raise ValueError(
                f"CrossStitch `inputs` must be a list of num_tasks = {self.num_tasks} tensors; "
                f"got {inputs_shape}."
            )
        if len({tuple(s)[1:] for s in shapes}) != 1:
            raise ValueError(f"CrossStitch `inputs` must all have one shape; got {[str(s) for s in shapes]}.")
        off = 0.1 / (self.num_tasks - 1)
        initial = [[0.9 if i == j else off for j in range(self.num_tasks)] for i in range(self.num_tasks)]
        self.alpha = self.add_weight(
            name="alpha",
            shape=(self.num_tasks, self.num_tasks),
            initializer=keras.initializers.Constant(initial),
        )
        super().build(inputs_shape)

    def call(self, inputs):
        stacked = tf.stack(inputs, axis=0)  # [T, B, ...]
        mixed = tf.tensordot(tf.convert_to_tensor(self.alpha), stacked, axes=[[1], [0]])
        return tf.unstack(mixed, num=self.num_tasks, axis=0)

    def get_config(self):
        config = super().get_config()
        config["num_tasks"] = self.num_tasks
        return config
