"""MultiTaskModel: a functional Keras model with dict outputs keyed by task."""

from mtl_keras.backend import IS_KERAS3, keras, register, tf
from mtl_keras.losses import masked
from mtl_keras.losses import weighting as weighting_lib
from mtl_keras.shared import shared_variable_mask
from mtl_keras.targets import check_targets, check_task_keys
from mtl_keras.task_metrics import TaskTrackers


class _MultiTaskBase(keras.Model):
    """A Keras functional model whose outputs are a dict keyed by task.

    ``MultiTaskModel(inputs, outputs={"ctr": p_ctr, "cvr": p_cvr})``; the
    class is defined per Keras flavour only for the constructor signature
    each one needs to revive it from a `.keras` file.

    Example:
    >>> x = keras.Input((4,), name="features")
    >>> h = keras.layers.Dense(8, activation="relu")(x)
    >>> heads = {t: keras.layers.Dense(1, activation="sigmoid", name=t)(h) for t in ("ctr", "cvr")}
    >>> model = MultiTaskModel(x, heads)
    >>> model.compile(loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"})
    """

    def _init_multitask(self, inputs, outputs, name, kwargs):
        if not isinstance(outputs, dict) or not outputs:
            raise ValueError(
                "`outputs` must be a non-empty dict {task name: output tensor}; "
                f"got {type(outputs).__name__}."
            )
        super().__init__(inputs=inputs, outputs=dict(outputs), name=name, **kwargs)
        self.task_names = tuple(outputs)
        self.task_output_shapes = {task: tuple(outputs[task].shape) for task in self.task_names}
        self._mtl_compiled = None
        self._mtl_shared_cache = {}

    # ------------------------------------------------------------------ compile
    def compile(self, optimizer="adam", loss=None, metrics=None, task_weighting=None, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            loss: dict {task: loss name, Loss or callable}; every task of the
                model must appear, with ``None`` for a head that is predicted
                but not trained.
            metrics: dict {task: [metric, ...]}; logged as ``<task>_<name>``.
            task_weighting: None (equal), a dict {task: float}, or a
                ``mtl_keras.losses.TaskWeighting``.
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ``run_eagerly``).
        """
        loss_fns = self._resolve_losses(loss)
        trained = [task for task in self.task_names if loss_fns[task] is not None]
        weighting = weighting_lib.get(task_weighting)
        weighting.build(trained)
        metric_ids = self._check_metrics(metrics)
        super().compile(optimizer=optimizer, **kwargs)
        self._mtl_compiled = {
            "loss": dict(loss),
            "metrics": metric_ids,
            "task_weighting": task_weighting,
        }
        self.trained_tasks = tuple(trained)
        self._loss_fns = loss_fns
        self._weighting = weighting
        head_units = {task: shape[-1] for task, shape in self.task_output_shapes.items()}
        self._trackers = TaskTrackers(trained, metric_ids, head_units)

    def _resolve_losses(self, loss):
        if not isinstance(loss, dict):
            raise ValueError(
                f"`loss` must be a dict {{task: loss}} over the tasks {self.task_names}; "
                f"got {type(loss).__name__}."
            )
        check_task_keys(
            "loss", loss, self.task_names, self.task_names,
            "give each task a loss, or None for a head that is predicted but not trained",
        )
        fns = {task: masked.per_example_loss(loss[task], task) for task in self.task_names}
        if all(fn is None for fn in fns.values()):
            raise ValueError("`loss` must give at least one task a loss; all are None.")
        return fns

    def _check_metrics(self, metrics):
        if metrics is None:
            return {}
        if not isinstance(metrics, dict):
            raise ValueError(
                f"`metrics` must be a dict {{task: [metric, ...]}}; got {type(metrics).__name__}."
            )
        check_task_keys("metrics", metrics, self.task_names)
        return {
            task: list(value) if isinstance(value, (list, tuple)) else [value]
            for task, value in metrics.items()
        }

    @property
    def metrics(self):
        return self._trackers.all() if getattr(self, "_mtl_compiled", None) else []

    # ---------------------------------------------------------------- the steps
    def train_step(self, data):
        """One optimisation step; its stages are the extension points.

        forward -> per-task losses (``compute_task_losses``) -> task weights
        (the ``TaskWeighting``) -> gradients (``compute_gradients``) -> apply.
        Gradient projections override ``compute_gradients`` using the same
        tape, the per-task losses and ``shared_variables``.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = check_targets(y, self)
        variables = self.trainable_variables
        with tf.GradientTape(persistent=False) as tape:
            y_pred = self(x, training=True)
            task_losses = self.compute_task_losses(y, y_pred, sample_weight, replica_share=True)
            weights = self._weighting.weights(tf.stack(task_losses))
            regularization = self._regularization_share()
            loss = tf.reduce_sum(weights * tf.stack(task_losses)) + regularization
        gradients = self.compute_gradients(tape, loss, variables)
        # Heads without a loss have no gradient: leave them out rather than warn each step.
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(gradients, variables) if g is not None]
        )
        return self._update_trackers(y, y_pred, sample_weight, task_losses, weights, regularization)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = check_targets(y, self)
        y_pred = self(x, training=False)
        task_losses = self.compute_task_losses(y, y_pred, sample_weight, replica_share=True)
        weights = self._weighting.weights(tf.stack(task_losses))
        regularization = self._regularization_share()
        return self._update_trackers(y, y_pred, sample_weight, task_losses, weights, regularization)

    def compute_gradients(self, tape, loss, variables):
        """Gradients of the weighted loss; the hook that gradient projections replace."""
        return tape.gradient(loss, variables)

    def compute_task_losses(self, y, y_pred, sample_weight=None, replica_share=False):
        """A list of scalar losses, one per trained task, labelled rows only.

        With ``replica_share=True`` (inside a train/test step) each replica
        returns its share, local sum / global label count, so that the sum over
        replicas, which the optimizer takes, is the global mean exactly.
        """
        losses = []
        for task in self.trained_tasks:
            task_weight = sample_weight.get(task) if isinstance(sample_weight, dict) else sample_weight
            total, count = masked.masked_loss_terms(
                self._loss_fns[task], y[task], y_pred[task], task_weight
            )
            if replica_share:
                count = _replica_sum(tf.stop_gradient(count))
            losses.append(tf.math.divide_no_nan(total, count))
        return losses

    def _regularization_share(self):
        if not self.losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(x, tf.float32) for x in self.losses]) / _num_replicas()

    def _update_trackers(self, y, y_pred, sample_weight, task_losses, weights, regularization):
        global_losses = [_replica_sum(tf.stop_gradient(t)) for t in task_losses]
        total = tf.reduce_sum(weights * tf.stack(global_losses)) + regularization * _num_replicas()
        return self._trackers.update(total, global_losses, weights, y, y_pred, sample_weight)

    # --------------------------------------------------------------- structure
    @property
    def shared_variables(self):
        """Trainable variables whose gradient depends on two or more tasks.

        Found from the graph, not from values: a variable is reached by a task
        when the task's output has a gradient path to it (traced, never run).
        The tasks are the trained ones once compiled, else every head.
        """
        tasks = tuple(getattr(self, "trained_tasks", None) or self.task_names)
        if tasks not in self._mtl_shared_cache:
            self._mtl_shared_cache[tasks] = shared_variable_mask(self, tasks)
        mask = self._mtl_shared_cache[tasks]
        return [v for v, shared in zip(self.trainable_variables, mask) if shared]

    # ----------------------------------------------------------- serialization
    def get_compile_config(self):
        if not self._mtl_compiled:
            return None
        config = dict(self._mtl_compiled)
        config["optimizer"] = keras.optimizers.serialize(self.optimizer)
        config["loss"] = {t: _serialize(v) for t, v in config["loss"].items()}
        config["metrics"] = {t: [_serialize(m) for m in ms] for t, ms in config["metrics"].items()}
        weighting = config["task_weighting"]
        if isinstance(weighting, weighting_lib.TaskWeighting):
            config["task_weighting"] = weighting.get_config().get("weights") if isinstance(
                weighting, weighting_lib.StaticWeighting
            ) else None
        return config

    def compile_from_config(self, config):
        config = dict(config)
        config["optimizer"] = keras.optimizers.deserialize(config["optimizer"])
        self.compile(**config)
        if self.built:
            # Create the slots now so the saved optimizer state can be restored.
            self.optimizer.build(self.trainable_variables)


def _serialize(identifier):
    return identifier if isinstance(identifier, str) or identifier is None else (
        keras.saving.serialize_keras_object(identifier)
    )


def _num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def _replica_sum(value):
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce("sum", value)


if IS_KERAS3:

    @register
    class MultiTaskModel(_MultiTaskBase):
        __doc__ = _MultiTaskBase.__doc__

        # Keras 3 revives a subclass as functional only with exactly this signature.
        def __init__(self, inputs, outputs, name=None, **kwargs):
            self._init_multitask(inputs, outputs, name, kwargs)

else:

    @register
    class MultiTaskModel(_MultiTaskBase):
        __doc__ = _MultiTaskBase.__doc__

        # tf_keras writes a functional config only with exactly this signature.
        def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
            self._init_multitask(inputs, outputs, name, dict(kwargs, trainable=trainable))
