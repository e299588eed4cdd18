"""MultiTaskModel: a functional Keras model with dict outputs keyed by task."""

from mtl_keras import auxiliary as auxiliary_heads
from mtl_keras import compile_config, optimizer_groups, shared_gradients
from mtl_keras.callbacks import EpochEnd
from mtl_keras import compile_options as options
from mtl_keras.backend import IS_KERAS3, keras, register, state_variable, tf
from mtl_keras.gradients import num_replicas, replica_sum
from mtl_keras.losses import masked
from mtl_keras.losses import weighting as weighting_lib
from mtl_keras.shared import representation_layers, variable_tasks
from mtl_keras.targets import check_targets
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
        # A model revived from its config gets the auxiliary heads back inside `outputs`.
        heads, revived = auxiliary_heads.split(outputs)
        graph_outputs = auxiliary_heads.merge(heads, kwargs.pop("auxiliary_outputs", None) or revived)
        super().__init__(inputs=inputs, outputs=graph_outputs, name=name, **kwargs)
        self.task_names = tuple(heads)
        self.auxiliary_tasks = tuple(auxiliary_heads.split(graph_outputs)[1])
        # Inference runs the heads alone, so auxiliary towers are neither computed nor
        # exported. object.__setattr__: the view shares our layers; it is not a sublayer.
        heads_only = keras.Model(inputs, heads) if self.auxiliary_tasks else None
        object.__setattr__(self, "_heads_only", heads_only)
        self.task_output_shapes = {task: tuple(heads[task].shape) for task in self.task_names}
        self._mtl_compiled = None
        self._mtl_reach_cache = {}

    def call(self, inputs, training=None, mask=None):
        """The heads by task; the auxiliary heads too, keyed ``<task>__aux``, only when training."""
        if training is True or self._heads_only is None:
            return super().call(inputs, training=training, mask=mask)
        heads = self._heads_only(inputs, training=training, mask=mask)
        return {task: heads[task] for task in self.task_names}

    # ------------------------------------------------------------------ compile
    def compile(
        self,
        optimizer="adam",
        loss=None,
        metrics=None,
        task_weighting=None,
        gradient_projection=None,
        auxiliary_loss_weight=0.5,
        task_start_steps=None,
        log_gradient_cosine=False,
        projection_mode="exact",
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
            auxiliary_loss_weight: gamma, the weight of each auxiliary head's
                loss inside its task's term: w_t (L_t + gamma L_t^aux).
            task_start_steps: {task: step}; a task joins the loss and the
                gradients at that training step.
            log_gradient_cosine: log ``grad_cosine/<a>__<b>`` without a projection.
            projection_mode: "exact" (per-task gradients of the shared
                variables) or "fast" (the task Gram matrix from gradients with
                respect to the shared representation: shared expert stacks'
                outputs and ``SharedRepresentation`` layers); see
                ``shared_gradients``.
            task_gradient_method: "loop" or "jacobian" (see ``gradients``).
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ``run_eagerly``). Under Keras 3,
                ``jit_compile="auto"`` (the default) means no XLA when
                per-task gradients are needed: XLA made those steps slower
                here (benchmarks/projection_overhead.py).
        """
        loss_fns = options.resolve_losses(loss, self.task_names)
        trained = tuple(task for task in self.task_names if loss_fns[task] is not None)
        metric_ids = options.check_metrics(metrics, self.task_names)
        self.trained_tasks = trained
        weighting = weighting_lib.get(task_weighting)
        weighting.build(trained, options.loss_kinds(loss), self)
        projection = options.check_projection(gradient_projection, self.shared_variables, trained)
        self._task_starts = options.task_starts(task_start_steps, trained)
        self._auxiliary_weight = options.non_negative("auxiliary_loss_weight", auxiliary_loss_weight)
        options.check_choice("task_gradient_method", task_gradient_method, ("loop", "jacobian"))
        options.check_choice("projection_mode", projection_mode, ("exact", "fast"))
        per_task = bool(log_gradient_cosine) or projection is not None
        self._representation_layers = (
            representation_layers(self) if per_task and projection_mode == "fast" else None
        )
        if IS_KERAS3 and kwargs.get("jit_compile", "auto") == "auto" and (
            per_task or weighting.needs_tape
        ):
            kwargs["jit_compile"] = False
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
            auxiliary_loss_weight=auxiliary_loss_weight,
            task_start_steps=task_start_steps,
            log_gradient_cosine=log_gradient_cosine,
            projection_mode=projection_mode,
            task_gradient_method=task_gradient_method,
        )
        self._loss_fns = loss_fns
        self._weighting = weighting
        self._projection = projection
        self._log_cosine = per_task
        self._task_gradient_method = task_gradient_method
        self._optimizer_groups = groups
        self._train_variables = [v for _, vs in groups for v in vs]
        self._step_counter = state_variable(tf.constant(0, tf.int64), "mtl_step")
        head_units = {task: shape[-1] for task, shape in self.task_output_shapes.items()}
        self._trackers = TaskTrackers(
            trained, metric_ids, head_units, cosine=self._log_cosine,
            auxiliary=[t for t in trained if t in self.auxiliary_tasks],
        )

    @property
    def metrics(self):
        return self._trackers.all() if getattr(self, "_mtl_compiled", None) else []

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit``, telling the task weighting where epochs end (for DWA)."""
        hooks = [EpochEnd(self._weighting)] if self._mtl_compiled else []
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
            aux_shares = self.compute_task_losses(
                y, y_pred, sample_weight, replica_share=True, auxiliary=True
            )
            weighted = [
                weights[i] * (share + self._auxiliary_weight * aux_shares[i])
                for i, share in enumerate(shares)
            ]
            # Stacked inside the tape: a target built after it closes has no gradient.
            weighted_vector = tf.stack(weighted)
            extra = (self._regularization() + self._weighting.regularization()) / num_replicas()
            loss = tf.reduce_sum(weighted_vector) + extra
        step = shared_gradients.TrainStep(tape, task_losses, shares, weighted, weighted_vector, extra, loss)
        if not per_task:
            gradients, gram = tape.gradient(loss, self._train_variables), None
        elif self._representation_layers is not None:
            representations = [layer.recorded_representation for layer in self._representation_layers]
            gradients, gram = shared_gradients.fast(
                tape, step, self._train_variables, self.shared_variables, self._projection, representations
            )
        else:
            gradients, gram = shared_gradients.exact(
                tape, step, self._train_variables, self.shared_variables, self._projection,
                self._task_gradient_method,
            )
        self._weighting.update(step)
        by_id = {id(v): g for v, g in zip(self._train_variables, gradients)}
        for group_optimizer, group_variables in self._optimizer_groups:
            # Heads without a loss have no gradient: leave them out rather than warn each step.
            pairs = [(by_id[id(v)], v) for v in group_variables if by_id[id(v)] is not None]
            group_optimizer.apply_gradients(pairs)
        self._step_counter.assign_add(1)
        aux_losses = tf.stop_gradient(replica_sum(tf.stack(aux_shares)))
        total = tf.reduce_sum(weights * (task_losses + self._auxiliary_weight * aux_losses))
        total += extra * num_replicas()
        return self._trackers.update(
            total, task_losses, weights, y, y_pred, sample_weight, gram, aux_losses
        )

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

    def _active_tasks(self):
        if self._task_starts is None:
            return tf.constant(1.0)
        step = tf.convert_to_tensor(self._step_counter)
        return tf.cast(step >= self._task_starts, tf.float32)

    def _regularization(self):
        if not self.losses:
            return tf.constant(0.0)
        return tf.add_n([tf.cast(x, tf.float32) for x in self.losses])

    def compute_task_losses(self, y, y_pred, sample_weight=None, replica_share=False, auxiliary=False):
        """A list of scalar losses, one per trained task, labelled rows only.

        With ``replica_share=True`` (inside a train/test step) each replica
        returns its share, local sum / global label count, so that the sum over
        replicas, which the optimizer takes, is the global mean exactly. With
        ``auxiliary=True``, the losses of the auxiliary heads on the same labels
        (0 for a task without one).
        """
        losses = []
        for task in self.trained_tasks:
            key = task + auxiliary_heads.SUFFIX if auxiliary else task
            if key not in y_pred:
                losses.append(tf.constant(0.0))
                continue
            task_weight = sample_weight.get(task) if isinstance(sample_weight, dict) else sample_weight
            total, count = masked.masked_loss_terms(
                self._loss_fns[task], y[task], y_pred[key], task_weight
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
