"""Uncertainty weighting: learned homoscedastic log-variances."""

from mtl_keras.backend import register, tf
from mtl_keras.weighting.base import TaskWeighting


@register
class UncertaintyWeighting(TaskWeighting):
    """Homoscedastic-uncertainty weighting with learned log-variances.

    Kendall et al., "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics", CVPR 2018. With s_k = log sigma_k^2
    (initialised to 0): a regression task contributes L_k / (2 exp(s_k)) +
    s_k / 2, a classification task L_k / exp(s_k) + s_k / 2. The logged weight
    is the factor on L_k. Each task's form follows its loss (cross-entropy and
    hinge losses are classification) unless ``task_types`` says otherwise.

    Args:
        task_types: optional dict task -> "regression" | "classification".

    Example:
    >>> weighting = UncertaintyWeighting()
    >>> weighting.build(["ctr", "cvr"])
    >>> weighting.weights(tf.constant([0.3, 0.2])).numpy().tolist()  # log-variances start at 0
    [0.5, 0.5]
    """

    def __init__(self, task_types=None):
        self.task_types = dict(task_types or {})
        for task, kind in self.task_types.items():
            if kind not in ("regression", "classification"):
                raise ValueError(
                    f"`task_types[{task!r}]` must be 'regression' or 'classification'; got {kind!r}."
                )

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        unknown = sorted(set(self.task_types) - set(task_names))
        if unknown:
            raise ValueError(f"`task_types` names unknown task(s) {unknown}; expected {task_names}.")
        kinds = [self.task_types.get(t, (loss_kinds or {}).get(t, "regression")) for t in task_names]
        self._factor = tf.constant([1.0 if k == "classification" else 0.5 for k in kinds])
        self.log_variances = self.add_state("log_variances", tf.zeros([len(task_names)]), trainable=True)

    def weights(self, task_losses):
        return self._factor * tf.exp(-tf.convert_to_tensor(self.log_variances))

    def regularization(self):
        return tf.reduce_sum(self.task_regularization())

    def task_regularization(self):
        return 0.5 * tf.convert_to_tensor(self.log_variances)


