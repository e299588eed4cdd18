"""Fixed task weights."""

from mtl_keras.backend import register, tf
from mtl_keras.weighting.base import TaskWeighting


@register
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

    def build(self, task_names, loss_kinds=None, model=None):
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


