"""Task weightings: how per-task losses are combined into the training loss.

A weighting is an object with one interface, so the train step has no branch
per method: ``build(task_names)`` once at compile time, then
``weights(task_losses)`` inside the gradient tape every step, returning a [T]
tensor in task order.
"""

from mtl_keras.backend import tf


class TaskWeighting:
    """Base class. Subclasses override ``weights`` (and ``build`` for state)."""

    def build(self, task_names):
        self.task_names = list(task_names)

    def weights(self, task_losses):
        """[T] float32 weights for the [T] task losses of this step."""
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class StaticWeighting(TaskWeighting):
    """Fixed weights by task; a task not named gets weight 1.

    Args:
        weights: dict task name -> float (>= 0).

    Example:
    >>> w = StaticWeighting({"ctr": 1.0, "cvr": 0.5})
    >>> w.build(["ctr", "cvr"])
    >>> w.weights(tf.constant([0.3, 0.2])).numpy().tolist()
    [1.0, 0.5]
    """

    def __init__(self, weights=None):
        weights = dict(weights or {})
        for task, value in weights.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"`weights` of StaticWeighting must map task names to floats >= 0; "
                    f"got {task!r}: {value!r}."
                )
        self.static_weights = {task: float(value) for task, value in weights.items()}

    def build(self, task_names):
        unknown = sorted(set(self.static_weights) - set(task_names))
        if unknown:
            raise ValueError(
                f"`weights` of StaticWeighting names unknown task(s) {unknown}; "
                f"expected tasks among {list(task_names)}."
            )
        super().build(task_names)
        self._constant = tf.constant(
            [self.static_weights.get(task, 1.0) for task in self.task_names], tf.float32
        )

    def weights(self, task_losses):
        return self._constant

    def get_config(self):
        return {"weights": dict(self.static_weights)}


def get(identifier):
    """None (equal weights), a dict of floats, or a TaskWeighting."""
    if identifier is None:
        return StaticWeighting()
    if isinstance(identifier, dict):
        return StaticWeighting(identifier)
    if isinstance(identifier, TaskWeighting):
        return identifier
    raise ValueError(
        "`task_weighting` must be None, a dict of floats by task, or a TaskWeighting; "
        f"got {identifier!r}."
    )
