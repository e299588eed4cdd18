"""Per-task gradients of the shared variables, and moving them across replicas."""

import math

from mtl_keras.backend import IS_KERAS3, tf

ZERO = tf.UnconnectedGradients.ZERO


def flatten(gradients):
    return tf.concat([tf.reshape(tf.convert_to_tensor(g), [-1]) for g in gradients], axis=0)


def unflatten(vector, variables):
    shapes = [tuple(v.shape) for v in variables]
    parts = tf.split(vector, [math.prod(shape) for shape in shapes])
    return [tf.reshape(p, shape) for p, shape in zip(parts, shapes)]


def sources(variables):
    """What ``tape.gradient`` differentiates against: the tf.Variable under a Keras 3 variable
    (whose string dtype TF cannot use to build the zeros of an unconnected gradient)."""
    return [v.value for v in variables] if IS_KERAS3 else list(variables)


def task_gradient_matrix(tape, task_losses, variables, method="loop"):
    """[T, P]: row t is the flattened gradient of task_losses[t] on ``variables``.

    "loop": one ``tape.gradient`` per task on a persistent tape, with
    ``task_losses`` a list of scalars; "jacobian": ``tape.jacobian`` with pfor,
    with ``task_losses`` the [T] vector. Either must have been computed inside
    the tape. benchmarks/projection_overhead.py compares the two.
    """
    variables = sources(variables)
    if method == "loop":
        return tf.stack(
            [flatten(tape.gradient(loss, variables, unconnected_gradients=ZERO)) for loss in task_losses]
        )
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

