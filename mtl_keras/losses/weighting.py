"""Task weightings: how per-task losses are combined into the training loss.

A weighting is an object with one interface, so the train step has no branch
per method. Once, at compile time, ``build(task_names, loss_kinds, model)``;
then every step, inside the gradient tape:

- ``weights(task_losses)`` -> [T] weights in task order (may depend on the
  weighting's own trainable variables, which then get gradients);
- ``regularization()`` -> a scalar added once to the loss;
- ``update(step)`` after the forward pass, with the tape, the global task
  losses and the model (GradNorm's own weight update, DWA's running sums);

and ``on_epoch_end()`` between epochs (called by MultiTaskModel.fit).
``task_losses`` are the global (all-replica) per-task losses, without gradient.
"""

from mtl_keras.backend import state_variable, tf


class TaskWeighting:
    """Base class; equal weights."""

    trainable_variables = ()
    needs_tape = False

    def build(self, task_names, loss_kinds=None, model=None):
        self.task_names = list(task_names)

    def weights(self, task_losses):
        return tf.ones([len(self.task_names)])

    def regularization(self):
        return tf.constant(0.0)

    def update(self, step):
        """Called every training step after the forward pass (see ``TrainStep``)."""

    def on_epoch_end(self):
        """Called by MultiTaskModel.fit after each epoch."""

    def get_config(self):
        return {}


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
        self.log_variances = state_variable(
            tf.zeros([len(task_names)]), "uncertainty_log_variances", trainable=True
        )
        self.trainable_variables = (self.log_variances,)

    def weights(self, task_losses):
        return self._factor * tf.exp(-tf.convert_to_tensor(self.log_variances))

    def regularization(self):
        return 0.5 * tf.reduce_sum(tf.convert_to_tensor(self.log_variances))


class DynamicWeightAverage(TaskWeighting):
    """Dynamic Weight Average.

    Liu et al., "End-to-End Multi-Task Learning with Attention", CVPR 2019.
    With epoch-average losses L_k, r_k = L_k(t-1) / L_k(t-2) and
    lambda_k = K softmax_k(r_k / T); lambda = 1 for the first two epochs. The
    averages are accumulated in the train step and rolled over at each epoch
    end by MultiTaskModel.fit, so no callback is needed.

    Args:
        temperature: T > 0 (2 in the paper).
    """

    def __init__(self, temperature=2.0):
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0; got {temperature!r}.")
        self.temperature = float(temperature)

    def build(self, task_names, loss_kinds=None, model=None):
        super().build(task_names)
        zeros = tf.zeros([len(task_names)])
        self._sums = state_variable(zeros, "dwa_loss_sums")
        self._count = state_variable(tf.constant(0.0), "dwa_count")
        self._previous = state_variable(tf.ones([len(task_names)]), "dwa_previous")
        self._before = state_variable(tf.ones([len(task_names)]), "dwa_before_previous")
        self._epochs = state_variable(tf.constant(0, tf.int64), "dwa_epochs")

    def weights(self, task_losses):
        ratio = tf.convert_to_tensor(self._previous) / tf.convert_to_tensor(self._before)
        dynamic = len(self.task_names) * tf.nn.softmax(ratio / self.temperature)
        return tf.where(tf.convert_to_tensor(self._epochs) >= 2, dynamic, tf.ones_like(dynamic))

    def update(self, step):
        self._sums.assign_add(step.task_losses)
        self._count.assign_add(1.0)

    def on_epoch_end(self):
        count = float(self._count.numpy())
        if count == 0:
            return
        self._before.assign(tf.convert_to_tensor(self._previous))
        self._previous.assign(tf.convert_to_tensor(self._sums) / count)
        self._sums.assign(tf.zeros_like(tf.convert_to_tensor(self._sums)))
        self._count.assign(0.0)
        self._epochs.assign_add(1)

    def get_config(self):
        return {"temperature": self.temperature}


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
