"""The metrics a MultiTaskModel logs: loss, <task>_loss, <task>_weight, <task>_<metric>.

They live in a plain holder, not as model attributes, so neither Keras counts
them among the model's weights or writes them into a `.keras` file.
"""

from mtl_keras.backend import keras, tf
from mtl_keras.training.labels import align_labels, label_mask

# Keras resolves "accuracy" by the head's shape; so do we.
_ACCURACY = {"accuracy", "acc"}


def resolve_metric(identifier, head_units=1):
    """A Metric or metric function from a name (as either Keras spells it), Metric, function or config.

    Names resolve the same in every context: tf_keras returns lower-case class
    names ("auc", "precision") unresolved, and inside its SavedModel loader it
    raises for them, so a name Keras does not resolve is matched to a class of
    ``keras.metrics`` regardless of case.

    Example:
    >>> type(resolve_metric("auc")).__name__
    'AUC'
    """
    if isinstance(identifier, str) and identifier in _ACCURACY:
        identifier = "binary_accuracy" if head_units == 1 else "categorical_accuracy"
    try:
        metric = keras.metrics.get(identifier)
    except (ValueError, TypeError) as error:
        if not isinstance(identifier, str):
            raise
        metric, failure = identifier, error
    else:
        failure = None
    if isinstance(metric, str):
        classes = {n.lower(): n for n in dir(keras.metrics) if n[:1].isupper()}
        name = classes.get(metric.lower())
        if name is None:
            raise ValueError(failure or f"Unknown metric {metric!r}.")
        metric = getattr(keras.metrics, name)()
    return metric


def task_metric(identifier, task, head_units):
    """A fresh metric named ``<task>_<name>`` from a name, Metric or function."""
    try:
        metric = resolve_metric(identifier, head_units)
    except (ValueError, TypeError) as error:
        raise ValueError(f"`metrics` for task {task!r}: unknown metric {identifier!r} ({error}).")
    name = identifier if isinstance(identifier, str) else None
    if isinstance(metric, keras.metrics.Metric):
        config = metric.get_config()
        config["name"] = f"{task}_{name or config['name']}"
        return metric.__class__.from_config(config)
    if callable(metric):
        return keras.metrics.MeanMetricWrapper(
            metric, name=f"{task}_{name or metric.__name__}"
        )
    raise ValueError(f"`metrics` for task {task!r}: {identifier!r} is not a metric.")


class TaskTrackers:
    """Running means of the losses and weights, and the compiled per-task metrics."""

    def __init__(self, trained_tasks, metric_ids, head_units, cosine=False, auxiliary=(), nonfinite=False):
        self.trained_tasks = list(trained_tasks)
        # Steps skipped for a NaN or Inf (compile(skip_nonfinite_steps=True)), this epoch.
        self.nonfinite = keras.metrics.Sum(name="nonfinite_steps") if nonfinite else None
        self.task_aux_loss = {t: keras.metrics.Mean(name=f"{t}_aux_loss") for t in auxiliary}
        # Gradient cosine between every pair of tasks on the shared variables.
        self.pairs = [
            (i, j) for i in range(len(self.trained_tasks)) for j in range(i + 1, len(self.trained_tasks))
        ] if cosine else []
        self.cosine = [
            keras.metrics.Mean(name=f"grad_cosine/{self.trained_tasks[i]}__{self.trained_tasks[j]}")
            for i, j in self.pairs
        ]
        self.loss = keras.metrics.Mean(name="loss")
        self.task_loss = {t: keras.metrics.Mean(name=f"{t}_loss") for t in self.trained_tasks}
        self.task_weight = {t: keras.metrics.Mean(name=f"{t}_weight") for t in self.trained_tasks}
        self.task_metrics = {
            task: [task_metric(m, task, head_units[task]) for m in ids]
            for task, ids in metric_ids.items()
        }

    def all(self):
        metrics = [self.loss]
        for task in self.trained_tasks:
            metrics += [self.task_loss[task], self.task_weight[task]]
            if task in self.task_aux_loss:
                metrics.append(self.task_aux_loss[task])
        for task_metrics in self.task_metrics.values():
            metrics += task_metrics
        return metrics + self.cosine + ([self.nonfinite] if self.nonfinite else [])

    def evaluation(self):
        """What evaluation logs, in ``all()``'s order: the weights, gradient cosines and
        skipped steps describe training steps, so ``evaluate`` and ``val_`` logs leave them out."""
        training_only = set(map(id, list(self.task_weight.values()) + self.cosine + [self.nonfinite]))
        return [metric for metric in self.all() if id(metric) not in training_only]

    def update(
        self, loss, task_losses, weights, y, y_pred, sample_weight, gram=None, aux_losses=None,
        finite=None, nonfinite_steps=None, training=True,
    ):
        """Updates the trackers. The logs hold the gradient cosines only when ``gram``
        is given, and only ``evaluation()``'s metrics when not ``training``. A step
        that is not ``finite`` (skipped) leaves the loss means alone and counts in
        ``nonfinite_steps``."""
        counted = None
        if finite is not None:
            counted = tf.cast(finite, tf.float32)
            self.nonfinite.update_state(1.0 - counted)

        def mean(metric, value):
            if counted is None:
                metric.update_state(value)
            else:
                metric.update_state(tf.where(finite, value, tf.zeros_like(value)), sample_weight=counted)

        mean(self.loss, loss)
        for index, task in enumerate(self.trained_tasks):
            mean(self.task_loss[task], task_losses[index])
            if training:
                mean(self.task_weight[task], weights[index])
            if task in self.task_aux_loss:
                mean(self.task_aux_loss[task], aux_losses[index])
        for task, task_metrics in self.task_metrics.items():
            if task not in y:
                continue
            labels, mask = label_mask(align_labels(y[task], y_pred[task]))
            weight = sample_weight.get(task) if isinstance(sample_weight, dict) else sample_weight
            if weight is not None:
                mask = mask * tf.reshape(tf.cast(weight, tf.float32), [-1])
            for metric in task_metrics:
                metric.update_state(labels, y_pred[task], sample_weight=mask)
        logged = self.all() if training else self.evaluation()
        if gram is None:
            logged = [m for m in logged if m not in self.cosine]
        else:
            norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
            for (i, j), metric in zip(self.pairs, self.cosine):
                metric.update_state(gram[i, j] / tf.maximum(norms[i] * norms[j], 1e-12))
        return {metric.name: metric.result() for metric in logged}
