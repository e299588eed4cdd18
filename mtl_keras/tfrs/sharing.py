"""Which tasks of a TFRS model reach which variables: a trace of ``compute_loss``.

A ``MultiTaskModel`` has its heads as graph outputs; a ``tfrs.Model`` has
only ``compute_loss(features, training)``, which the mixin's convention makes
return ``{task: scalar loss}``. So the tasks and the variables each one
reaches are found by tracing ``compute_loss`` once on a batch spec (the
first batch's structure, or ``compile(sample_features=...)``) in a
``tf.function`` that is never run: nothing changes (metrics, moving
statistics, seeds), and ``training=True`` paths count as in the train step.
A variable is reached by a task when the task's loss has a gradient path to
it; "shared" means reached by two or more tasks, as for ``MultiTaskModel``.
"""

import numpy as np

from mtl_keras.backend import tf
from mtl_keras.training.sharing import trace_once


def features_of(data):
    """What ``compute_loss`` gets: a batch, with a 1-tuple ``(x,)`` unwrapped
    (tf_keras's ``train_on_batch(x)`` and ``evaluate(x)`` wrap a lone ``x`` so)."""
    if isinstance(data, tuple) and len(data) == 1:
        return data[0]
    return data


def batch_spec(value):
    """The nested TensorSpec of a batch with a dynamic batch dimension.

    ``value``: a ``tf.data.Dataset`` (its ``element_spec``), or a nested
    structure of TensorSpecs, tensors or arrays (dim 0 is the batch).

    Example:
    >>> spec = batch_spec({"x": np.ones((4, 3), "float32"), "user_id": np.array([b"u1", b"u2", b"u1", b"u3"], object)})
    >>> spec["x"].shape.as_list(), spec["user_id"].dtype.name
    ([None, 3], 'string')
    """
    if isinstance(value, tf.data.Dataset):
        return value.element_spec

    def one(leaf):
        if isinstance(leaf, tf.TensorSpec):
            return leaf
        if isinstance(leaf, (np.ndarray, list)) and np.asarray(leaf[:1]).dtype == object:
            first = tf.constant(np.asarray(leaf[:1]).astype(bytes))
        else:
            first = tf.convert_to_tensor(leaf[:1])
        return tf.TensorSpec([None] + first.shape[1:].as_list(), first.dtype)

    return tf.nest.map_structure(one, features_of(value))


def check_losses(losses, task_names=None):
    """The task names in training order; ``losses`` must be a dict of scalars."""
    if not isinstance(losses, dict) or not losses:
        raise ValueError(
            "`compute_loss` of a model with MultiTaskMixin must return a non-empty dict "
            f"{{task name: scalar loss}}; got {type(losses).__name__}."
        )
    for task, loss in losses.items():
        if not isinstance(task, str):
            raise ValueError(f"`compute_loss` returned a non-string task key {task!r}.")
        rank = tf.convert_to_tensor(loss).shape.rank
        if rank not in (0, None):
            raise ValueError(
                f"`compute_loss` returned a loss of rank {rank} for task {task!r}; each "
                "task's loss must be a scalar (reduce it, e.g. with a Keras loss's default reduction)."
            )
    if task_names is None:
        return tuple(losses)
    task_names = tuple(task_names)
    if sorted(task_names) != sorted(losses):
        raise ValueError(
            f"`task_names` {list(task_names)} must name exactly the tasks `compute_loss` "
            f"returns: {list(losses)}."
        )
    return task_names


def task_variables(model, spec, task_names=None):
    """(tasks, reached): the task names in order, and for each of
    ``model.trainable_variables`` (after the trace has built the model) the set of
    tasks whose loss reaches it. ``spec``: ``batch_spec`` of a batch.

    Example:
    >>> class TwoHeads(keras.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.shared, self.a, self.b = keras.layers.Dense(2), keras.layers.Dense(1), keras.layers.Dense(1)
    ...     def compute_loss(self, features, training=False):
    ...         h = self.shared(features["x"])
    ...         return {"a": tf.reduce_mean(self.a(h)), "b": tf.reduce_mean(self.b(h))}
    >>> tasks, reached = task_variables(TwoHeads(), batch_spec({"x": np.ones((4, 3), "float32")}))
    >>> tasks, [sorted(r) for r in reached]  # shared kernel and bias, then each head's
    (('a', 'b'), [['a', 'b'], ['a', 'b'], ['a'], ['a'], ['b'], ['b']])
    """
    found = {}

    def trace(features):
        with tf.GradientTape(persistent=True) as tape:
            losses = model.compute_loss(features, training=True)
        tasks = check_losses(losses, task_names)
        variables = model.trainable_variables
        reached = {}
        for task in tasks:
            for variable, grad in zip(variables, tape.gradient(losses[task], variables)):
                if grad is not None:
                    reached.setdefault(id(variable), set()).add(task)
        found.update(tasks=tasks, reached=reached)
        return tf.constant(0)

    # With autograph, as Keras traces its train function: TFRS's tasks use `len(tf.shape(x))`.
    trace_once(trace, spec, autograph=True)
    reached = found["reached"]
    return found["tasks"], [set(reached.get(id(v), ())) for v in model.trainable_variables]
