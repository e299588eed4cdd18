"""Per-task gradients of the shared variables, and moving them across replicas."""

import math

from mtl_keras.backend import IS_KERAS3, keras, tf

ZERO = tf.UnconnectedGradients.ZERO


def flatten(gradients):
    return tf.concat([tf.reshape(tf.convert_to_tensor(g), [-1]) for g in gradients], axis=0)


def unflatten(vector, variables):
    shapes = [tuple(v.shape) for v in variables]
    parts = tf.split(vector, [math.prod(shape) for shape in shapes])
    return [tf.reshape(p, shape) for p, shape in zip(parts, shapes)]


def sources(values):
    """What ``tape.gradient`` differentiates against: the tf.Variable under a Keras 3 variable
    (whose string dtype TF cannot use to build the zeros of an unconnected gradient); tensors
    stay as they are."""
    return [v.value if IS_KERAS3 and isinstance(v, keras.Variable) else v for v in values]


def unscaled_gradient(tape, target, variables, scale=None, output_gradients=None, unconnected=ZERO):
    """``tape.gradient`` of ``target`` (a tensor or a list) started from the loss scale ``scale``
    (None: no loss scaling) and divided by it again, so float16 backward passes keep
    small gradients from underflowing while callers see true gradients."""
    is_list = isinstance(target, (list, tuple))
    targets = list(target) if is_list else [target]
    upstream = list(output_gradients) if output_gradients is not None else [None] * len(targets)
    if scale is not None:
        # An upstream at a float16 tensor (a representation under mixed precision) scales in float16.
        upstream = [tf.cast(scale, (t if u is None else u).dtype) * (tf.ones_like(t) if u is None else u)
                    for t, u in zip(targets, upstream)]
    if all(u is None for u in upstream):
        upstream = None
    gradients = tape.gradient(
        targets if is_list else targets[0], sources(variables),
        output_gradients=upstream if (upstream is None or is_list) else upstream[0],
        unconnected_gradients=unconnected or tf.UnconnectedGradients.NONE,
    )
    if scale is None:
        return gradients
    return [_divide(g, scale) for g in gradients]


def _divide(gradient, scale):
    if gradient is None:
        return None
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values / tf.cast(scale, gradient.values.dtype), gradient.indices, gradient.dense_shape)
    return gradient / tf.cast(scale, gradient.dtype)



def task_gradient_matrix(tape, task_losses, variables, method="loop", scale=None):
    """[T, P]: row t is the flattened gradient of task_losses[t] on ``variables``.

    "loop": one ``tape.gradient`` per task on a persistent tape, with
    ``task_losses`` a list of scalars; "jacobian": ``tape.jacobian`` with pfor,
    with ``task_losses`` the [T] vector (no loss scaling: ``tape.jacobian`` has
    no upstream gradient). Either must have been computed inside the tape. benchmarks/projection_overhead.py compares the two.
    """
    if method == "loop":
        return tf.stack([flatten(unscaled_gradient(tape, loss, variables, scale)) for loss in task_losses])
    variables = sources(variables)
    jacobians = tape.jacobian(
        task_losses, variables, unconnected_gradients=ZERO, experimental_use_pfor=True
    )
    return tf.concat([tf.reshape(j, [task_losses.shape[0], -1]) for j in jacobians], axis=1)


def num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def replica_sum(value):
    """The sum over replicas, on every replica (the value itself on one device)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("sum", value)

