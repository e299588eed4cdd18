"""MultiTaskModel: a functional Keras model with dict outputs keyed by task."""

import collections

from mtl_keras import compile_config, optimizer_groups
from mtl_keras.backend import IS_KERAS3, keras, register, state_variable, tf
from mtl_keras.gradients import (
    ZERO,
    flatten,
    num_replicas,
    replica_sum,
    sources,
    task_gradient_matrix,
    unflatten,
)
from mtl_keras.losses import masked
from mtl_keras.losses import weighting as weighting_lib
from mtl_keras.losses.projection import GradientProjection, gram_matrix
from mtl_keras.shared import variable_tasks
from mtl_keras.targets import check_targets, check_task_keys
from mtl_keras.task_metrics import TaskTrackers

# What a weighting's ``update`` sees each step.
TrainStep = collections.namedtuple("TrainStep", "tape task_losses task_loss_shares")


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
        self._mtl_reach_cache = {}

    # ------------------------------------------------------------------ compile
    def compile(
        self,
        optimizer="adam",
        loss=None,
        metrics=None,
        task_weighting=None,
        gradient_projection=None,
        task_start_steps=None,
        log_gradient_cosine=False,
        task_gradient_method="loop",
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: an optimizer or its name, or a dict of them by group:
                "shared", a task name, "default" (see ``optimizer_groups``).
            loss: dict {task: loss name, Loss or callable}; every task of the
                model must appear, with ``None`` for a head that is predicted
                but not trained.
            metrics: dict {task: [metric, ...]}; logged as ``<task>_<name>``.
            task_weighting: None (equal), a dict {task: float}, or a
                ``mtl_keras.losses.TaskWeighting``.
            gradient_projection: None or a ``mtl_keras.losses`` projection
                (PCGrad, GradVac, MGDA, CAGrad, ParetoEfficient), applied to
                the per-task gradients of ``shared_variables``.
            task_start_steps: {task: step}; a task joins the loss and the
                gradients at that training step.
            log_gradient_cosine: log ``grad_cosine/<a>__<b>`` without a projection.
            task_gradient_method: "loop" or "jacobian" (see ``gradients``).
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ``run_eagerly``).
        """
        loss_fns = self._resolve_losses(loss)
        trained = tuple(task for task in self.task_names if loss_fns[task] is not None)
        metric_ids = self._check_metrics(metrics)
        self.trained_tasks = trained
        weighting = weighting_lib.get(task_weighting)
        weighting.build(trained, _loss_kinds(loss), self)
        projection = self._check_projection(gradient_projection, trained)
        self._task_starts = _task_starts(task_start_steps, trained)
        if task_gradient_method not in ("loop", "jacobian"):
            raise ValueError(
                f"`task_gradient_method` must be 'loop' or 'jacobian'; got {task_gradient_method!r}."
            )
        main, groups = optimizer_groups.resolve(
            optimizer,
            self._reaching_tasks(trained),
            self.trainable_variables,
            weighting.trainable_variables,
            trained,
        )
        super().compile(optimizer=main, **kwargs)
        if IS_KERAS3:
            # Build each optimizer on exactly its variables (weightings' included).
            for group_optimizer, group_variables in groups:
                if not group_optimizer.built:
                    group_optimizer.build(group_variables)
        self._mtl_compiled = dict(
            optimizer=optimizer,
            loss=loss,
            metrics=metric_ids,
            task_weighting=task_weighting,
            gradient_projection=gradient_projection,
            task_start_steps=task_start_steps,
            log_gradient_cosine=log_gradient_cosine,
            task_gradient_method=task_gradient_method,
        )
        self._loss_fns = loss_fns
        self._weighting = weighting
        self._projection = projection
        self._log_cosine = bool(log_gradient_cosine) or projection is not None
        self._task_gradient_method = task_gradient_method
        self._optimizer_groups = groups
        self._train_variables = [v for _, vs in groups for v in vs]
        self._step_counter = state_variable(tf.constant(0, tf.int64), "mtl_step")
        head_units = {task: shape[-1] for task, shape in self.task_output_shapes.items()}
        self._trackers = TaskTrackers(trained, metric_ids, head_units, cosine=self._log_cosine)

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

    def _check_projection(self, projection, trained):
        if projection is None:
            return None
        if not isinstance(projection, GradientProjection):
            raise ValueError(
                "`gradient_projection` must be None or a mtl_keras.losses projection "
                f"(PCGrad, GradVac, MGDA, CAGrad, ParetoEfficient); got {projection!r}."
            )
        if not self.shared_variables:
            raise ValueError(
                "`gradient_projection` needs shared variables, and no variable of this model "
                f"is reached by two or more of the trained tasks {list(trained)}."
            )
        projection.build(len(trained), trained)
        return projection

    @property
    def metrics(self):
        return self._trackers.all() if getattr(self, "_mtl_compiled", None) else []

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit``, telling the task weighting where epochs end (for DWA)."""
        hooks = [_EpochEnd(self._weighting)] if self._mtl_compiled else []
        return super().fit(*args, callbacks=list(callbacks or []) + hooks, **kwargs)

    # ---------------------------------------------------------------- the steps
    def train_step(self, data):
        """forward -> per-task losses -> weights -> gradients (projected on the
        shared variables when asked) -> each group's optimizer."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = check_targets(y, self)
        per_task = self._log_cosine
        with tf.GradientTape(persistent=per_task or self._weighting.needs_tape) as tape:
            y_pred = self(x, training=True)
            shares = self.compute_task_losses(y, y_pred, sample_weight, replica_share=True)
            task_losses = tf.stop_gradient(replica_sum(tf.stack(shares)))
            weights = self._weighting.weights(task_losses) * self._active_tasks()
            weighted = [weights[i] * share for i, share in enumerate(shares)]
            extra = (self._regularization() + self._weighting.regularization()) / num_replicas()
            loss = tf.add_n(weighted) + extra
        if per_task:
            gradients, cosine = self._projected_gradients(tape, weighted, extra, loss, task_losses)
        else:
            gradients, cosine = tape.gradient(loss, self._train_variables), None
        self._weighting.update(TrainStep(tape, task_losses, shares))
        by_id = {id(v): g for v, g in zip(self._train_variables, gradients)}
        for group_optimizer, group_variables in self._optimizer_groups:
            # Heads without a loss have no gradient: leave them out rather than warn each step.
            pairs = [(by_id[id(v)], v) for v in group_variables if by_id[id(v)] is not None]
            group_optimizer.apply_gradients(pairs)
        self._step_counter.assign_add(1)
        total = tf.reduce_sum(weights * task_losses) + extra * num_replicas()
        return self._trackers.update(total, task_losses, weights, y, y_pred, sample_weight, cosine)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = check_targets(y, self)
        y_pred = self(x, training=False)
        shares = self.compute_task_losses(y, y_pred, sample_weight, replica_share=True)
        task_losses = replica_sum(tf.stack(shares))
        weights = self._weighting.weights(task_losses) * self._active_tasks()
        extra = self._regularization() + self._weighting.regularization()
        total = tf.reduce_sum(weights * task_losses) + extra
        return self._trackers.update(total, task_losses, weights, y, y_pred, sample_weight)

    def _projected_gradients(self, tape, weighted, extra, loss, task_losses):
        """Task-specific variables: the gradient of the weighted loss. Shared ones:
        the per-task gradients, summed over replicas *before* they are combined;
        each replica then applies 1/R of the combination, which the optimizer's
        sum over replicas restores exactly once."""
        shared = self.shared_variables
        shared_ids = {id(v) for v in shared}
        others = [v for v in self._train_variables if id(v) not in shared_ids]
        other_gradients = dict(zip(map(id, others), tape.gradient(loss, others)))
        matrix = replica_sum(task_gradient_matrix(tape, weighted, shared, self._task_gradient_method))
        gram = gram_matrix(matrix)
        if self._projection is not None:
            combined = self._projection.combine_with_gram(matrix, gram, task_losses)
        else:
            combined = tf.reduce_sum(matrix, axis=0)
        combined = combined / num_replicas() + flatten(
            tape.gradient(extra, sources(shared), unconnected_gradients=ZERO)
        )
        other_gradients.update(zip(map(id, shared), unflatten(combined, shared)))
        return [other_gradients[id(v)] for v in self._train_variables], gram

    def _active_tasks(self):
        if self._task_starts is None:
            return tf.constant(1.0)
        step = tf.convert_to_tensor(self._step_counter)
        return tf.cast(step >= self._task_starts, tf.float32)

    def _regularization(self):
        if not self.losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(x, tf.float32) for x in self.losses])

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
                count = replica_sum(tf.stop_gradient(count))
            losses.append(tf.math.divide_no_nan(total, count))
        return losses

    # --------------------------------------------------------------- structure
    def _reaching_tasks(self, tasks):
        tasks = tuple(tasks)
        if tasks not in self._mtl_reach_cache:
            self._mtl_reach_cache[tasks] = variable_tasks(self, tasks)
        return self._mtl_reach_cache[tasks]

    @property
    def shared_variables(self):
        """Trainable variables whose gradient depends on two or more tasks.

        Found from the graph, not from values: a variable is reached by a task
        when the task's output has a gradient path to it (traced, never run).
        The tasks are the trained ones once compiled, else every head.
        """
        tasks = getattr(self, "trained_tasks", None) or self.task_names
        reached = self._reaching_tasks(tasks)
        return [v for v, by in zip(self.trainable_variables, reached) if len(by) >= 2]

    # ----------------------------------------------------------- serialization
    def get_compile_config(self):
        if not self._mtl_compiled:
            return None
        return compile_config.serialize(self._mtl_compiled)

    def compile_from_config(self, config):
        self.compile(**compile_config.deserialize(config))


class _EpochEnd(keras.callbacks.Callback):
    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_end(self, epoch, logs=None):
        self.weighting.on_epoch_end()


def _loss_kinds(loss):
    """"classification" for cross-entropy and hinge losses, else "regression"."""
    kinds = {}
    for task, identifier in loss.items():
        name = identifier if isinstance(identifier, str) else type(identifier).__name__
        name = getattr(identifier, "__name__", name).lower()
        kinds[task] = "classification" if ("crossentropy" in name or "hinge" in name) else "regression"
    return kinds


def _task_starts(task_start_steps, trained):
    if not task_start_steps:
        return None
    if not isinstance(task_start_steps, dict):
        raise ValueError(f"`task_start_steps` must be a dict {{task: step}}; got {task_start_steps!r}.")
    check_task_keys("task_start_steps", task_start_steps, trained)
    for task, step in task_start_steps.items():
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"`task_start_steps[{task!r}]` must be an integer >= 0; got {step!r}.")
    return tf.constant([task_start_steps.get(t, 0) for t in trained], tf.int64)


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
