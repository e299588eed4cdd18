"""MultiTaskModel: a functional Keras model with dict outputs keyed by task.

``compile`` resolves the training pieces of ``mtl_keras.training``; the train
step composes them: task losses -> weighting -> gradient mode (plain, exact or
fast projection) -> optimizer groups -> logs. What it trains with beyond the
weights (weighting and projection state, group optimizers, the step) is
training state: saved like the optimizer, never one of ``model.weights``.
"""

from mtl_keras.backend import IS_KERAS3, keras, register, tf
from mtl_keras.features.inputs import prepare_arguments
from mtl_keras.training import arguments, auxiliary as auxiliary_heads, execution, factory, labels, sub_batches
from mtl_keras.training.data import data_arguments, first_replica_batch
from mtl_keras.training.persistence import SavesTraining
from mtl_keras.training.sharing import shared_variables, variable_tasks
from mtl_keras.training.step import check_strategy, resolve_jit_compile


class _MultiTaskBase(SavesTraining, keras.Model):
    """A Keras functional model whose outputs are a dict keyed by task.

    ``MultiTaskModel(inputs, outputs={"ctr": p_ctr, "cvr": p_cvr})``; the
    class is defined per Keras flavour only for the constructor signature
    each one needs to revive it from a `.keras` file.

    Args:
        inputs: the Keras inputs, as ``keras.Model`` takes them.
        outputs: {task: output tensor}; each key names a task.
        name: the model's name.
        trainable: whether the weights train (tf_keras's signature names it).
        **kwargs: passed to ``keras.Model`` (``auxiliary_outputs``: {task:
            self-auxiliary tower output}, trained and dropped at export).

    Example:
    >>> x = keras.Input((4,), name="features")
    >>> h = keras.layers.Dense(8, activation="relu")(x)
    >>> heads = {t: keras.layers.Dense(1, activation="sigmoid", name=t)(h) for t in ("ctr", "cvr")}
    >>> model = MultiTaskModel(x, heads)
    >>> model.compile(loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"},
    ...               task_weighting="uncertainty", gradient_projection="pcgrad")
    """

    def _init_multitask(self, inputs, outputs, name, kwargs):
        if not isinstance(outputs, dict) or not outputs:
            raise ValueError(f"`outputs` must be a non-empty dict {{task name: output tensor}}; "
                             f"got {type(outputs).__name__}.")
        # A model revived from its config gets the auxiliary heads back inside `outputs`.
        heads, revived = auxiliary_heads.split(outputs)
        graph_outputs = auxiliary_heads.merge(heads, kwargs.pop("auxiliary_outputs", None) or revived)
        super().__init__(inputs=inputs, outputs=graph_outputs, name=name, **kwargs)
        # object.__setattr__: kept out of Keras's and TensorFlow's tracking (no weights here).
        heads_only = keras.Model(inputs, heads) if len(heads) < len(graph_outputs) else None
        for attribute, value in dict(
            task_names=tuple(heads),
            auxiliary_tasks=tuple(auxiliary_heads.split(graph_outputs)[1]),
            task_output_shapes={task: tuple(heads[task].shape) for task in heads},
            trained_tasks=None,
            _heads_only=heads_only,
            _mtl_trainer=None,
            _mtl_reach_cache={},
            _mtl_step_functions=None,
        ).items():
            object.__setattr__(self, attribute, value)
        self._mtl_state = None

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
        loss_weights=None,
        skip_nonfinite_steps=False,
        **kwargs,
    ):
        """Configures training.

        Args:
            optimizer: an optimizer or its name, or a dict of them by group:
                "shared", a task name, "default" (see ``training.optimizers``).
                Learning-rate callbacks set the main optimizer's rate ("default",
                else "shared") and every group follows by the same factor. A
                ``LossScaleOptimizer`` (given, or implied by the
                "mixed_float16" policy) scales the loss of every group.
            loss: dict {task: loss name, Loss or callable}; every task of the
                model must appear, with ``None`` for a head that is predicted
                but not trained. As Keras takes it for a multi-output model, also
                a list with one loss per task in the model's task order, or one
                loss that every task gets.
            metrics: a dict {task: metric or [metric, ...]}, one list for every
                trained task, or one entry per head (``training.arguments.check_metrics``);
                logged as ``<task>_<name>``.
            task_weighting: None (equal), a name ("uncertainty", "gradnorm",
                "dwa", "equal"), a dict {task: float}, or a ``TaskWeighting``.
            gradient_projection: None, a name ("pcgrad", "gradvac", "mgda",
                "cagrad", "pareto") or a ``GradientProjection``, applied to the
                per-task gradients of ``shared_variables``.
            auxiliary_loss_weight: gamma, the weight of each auxiliary head's
                loss inside its task's term: w_t (L_t + gamma L_t^aux).
            task_start_steps: {task: step}; a task joins the loss and the
                gradients at that training step.
            log_gradient_cosine: log ``grad_cosine/<a>__<b>`` without a projection.
            projection_mode: "exact" (per-task gradients of the shared
                variables) or "fast" (the task Gram matrix from gradients with
                respect to the shared representation); see ``training.gradient_modes``.
            task_gradient_method: "loop" or "jacobian" (see ``training.task_gradients``).
            loss_weights: Keras's argument, a dict {task: float}: the same as
                ``task_weighting=`` that dict (giving both is an error).
            skip_nonfinite_steps: a step whose task loss or gradient is NaN or
                Inf leaves every variable unchanged and counts in the logged
                ``nonfinite_steps``. By default ``fit`` stops instead, with an
                error naming the task and the step.
            **kwargs: passed to ``keras.Model.compile`` (``jit_compile``,
                ``steps_per_execution``, ``run_eagerly``). Left unset (Keras
                3's "auto", tf_keras's None), ``jit_compile`` means XLA, on CPU
                too, when every layer compiles, and no XLA under a
                distribution strategy (``training.step.resolve_jit_compile``).
                Fallback: pass ``jit_compile=False`` (a layer XLA cannot
                compile, or a custom op, fails at the first step with an XLA
                error). ``steps_per_execution`` unset: ``training.execution``.
        """
        if kwargs.pop("from_serialized", False):
            # tf_keras's SavedModel loader: the training config carries our arguments.
            for unused in ("weighted_metrics", "sample_weight_mode"):
                kwargs.pop(unused, None)
            return arguments.compile_saved_model(self, kwargs)
        check_strategy()
        loss = arguments.loss_dict(loss, self.task_names)
        loss_fns = arguments.resolve_losses(loss, self.task_names)
        trained = tuple(task for task in self.task_names if loss_fns[task] is not None)
        object.__setattr__(self, "trained_tasks", trained)
        metric_ids = arguments.check_metrics(metrics, self.task_names, trained)
        weighting = factory.resolve_weighting(task_weighting, loss_weights, projection_mode, task_gradient_method)
        # Given ones travel with the compile config, so a resumed model steps as this one
        # (stateless random draws, for one, differ between XLA and TensorFlow's kernels).
        keras_options = {k: kwargs[k] for k in ("jit_compile", "steps_per_execution", "run_eagerly") if k in kwargs}
        kwargs["jit_compile"] = resolve_jit_compile(
            self, kwargs.get("jit_compile", "auto"), kwargs.get("run_eagerly", False)
        )
        auxiliary_weight = arguments.non_negative("auxiliary_loss_weight", auxiliary_loss_weight)
        trainer = factory.build_trainer(
            self, trained, self._reaching_tasks(trained), weighting,
            optimizer=optimizer, gradient_projection=gradient_projection,
            loss_kinds=arguments.loss_kinds(loss), log_gradient_cosine=log_gradient_cosine,
            projection_mode=projection_mode, task_gradient_method=task_gradient_method,
            task_start_steps=task_start_steps, skip_nonfinite_steps=skip_nonfinite_steps,
            compile_keras=lambda main: super(_MultiTaskBase, self).compile(optimizer=main, **kwargs),
            auxiliary_weight=auxiliary_weight, metric_ids=metric_ids,
            head_units={task: shape[-1] for task, shape in self.task_output_shapes.items()},
            auxiliary_tasks=self.auxiliary_tasks,
        )
        object.__setattr__(self, "_mtl_compiled", dict(
            optimizer=optimizer, loss=loss, metrics=metric_ids, task_weighting=weighting,
            gradient_projection=trainer.state.projection, auxiliary_loss_weight=auxiliary_loss_weight,
            task_start_steps=task_start_steps, log_gradient_cosine=log_gradient_cosine,
            projection_mode=projection_mode, task_gradient_method=task_gradient_method,
            skip_nonfinite_steps=bool(skip_nonfinite_steps), **keras_options,
        ))
        object.__setattr__(self, "_mtl_loss_fns", loss_fns)
        object.__setattr__(self, "_mtl_step_functions", None if "steps_per_execution" in kwargs else {})

    @property
    def metrics(self):
        return self._mtl_trainer.trackers.all() if self._mtl_trainer else []

    @property
    def metrics_names(self):
        """The names of ``evaluate()``'s values, in order (training-only logs such as
        ``<task>_weight`` are in ``fit``'s History only)."""
        return [m.name for m in self._mtl_trainer.trackers.evaluation()] if self._mtl_trainer else []

    @property
    def training_state(self):
        """The compiled TrainingState (weighting, projection, group optimizers, step), or None."""
        return self._mtl_state

    def fit(self, *args, callbacks=None, **kwargs):
        """``keras.Model.fit`` with the training pieces' hooks (``Trainer.callbacks``); a
        FeatureSpec model also takes NumPy string columns (``features.prepare_arguments``);
        ``class_weight`` is per task, {task: {class: weight}} (``training.data.data_arguments``)."""
        args, kwargs = data_arguments(self, *prepare_arguments(self, args, kwargs))
        if self._mtl_trainer:
            callbacks = self._mtl_trainer.callbacks(callbacks, self.distribute_strategy)
        with execution.steps_for_fit(self, callbacks, execution.fit_arguments(super().fit, args, kwargs)):
            return super().fit(*args, callbacks=callbacks, **kwargs)

    def evaluate(self, *args, **kwargs):
        args, kwargs = data_arguments(self, *prepare_arguments(self, args, kwargs))
        return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        args, kwargs = data_arguments(self, *prepare_arguments(self, args, kwargs))
        return super().predict(*args, **kwargs)

    # ---------------------------------------------------------------- the steps
    def train_step(self, data):
        """forward -> per-task losses -> weights -> gradients (projected on the
        shared variables when asked) -> each group's optimizer -> logs."""
        trainer = self._mtl_trainer
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = labels.check_targets(y, self)
        with tf.GradientTape(persistent=trainer.persistent) as tape:
            y_pred, y, sample_weight, step = self._training_forward(x, y, sample_weight)
        gram, finite = trainer.apply(tape, step)
        return trainer.log(step, y, y_pred, sample_weight, gram, finite)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y = labels.check_targets(y, self)
        # The whole graph, auxiliary heads included, so val_loss is assembled as loss is.
        y_pred = super().call(x, training=False)
        return self._mtl_trainer.log(
            self._assemble_loss(y, y_pred, sample_weight), y, y_pred, sample_weight, training=False
        )

    def _training_forward(self, x, y, sample_weight):
        """(outputs, labels, sample weights, TrainStep) of a training forward pass. A projection
        that draws S sub-batches gets one pass per sub-batch (``training.sub_batches``), and
        the outputs, labels and weights come back with their rows grouped by sub-batch."""
        count = self._mtl_trainer.sub_batches
        if count == 1:
            y_pred = self(x, training=True)
            return y_pred, y, sample_weight, self._assemble_loss(y, y_pred, sample_weight)
        sub_batches.check_batch(x, count)
        xs, ys, weights = (sub_batches.split_rows(v, count) for v in (x, y, sample_weight))
        outputs, part_shares, regularization = [], [], []
        for x_part, y_part, weight_part in zip(xs, ys, weights):
            outputs.append(self(x_part, training=True))
            # Activity regularizers count each call's rows: their mean over the calls is the batch's.
            regularization.append(factory.regularization(self))
            part_shares.append([labels.loss_shares(self._mtl_loss_fns, self.trained_tasks, y_part, outputs[-1],
                                                   weight_part, suffix) for suffix in ("", auxiliary_heads.SUFFIX)])
        y_pred, y, sample_weight = (sub_batches.join_rows(parts) for parts in (outputs, ys, weights))
        step = self._assemble_loss(y, y_pred, sample_weight, tf.add_n(regularization) / count, part_shares)
        return y_pred, y, sample_weight, step

    def _assemble_loss(self, y, y_pred, sample_weight, regularization=None, part_shares=None):
        fns, tasks = self._mtl_loss_fns, self.trained_tasks
        return self._mtl_trainer.assemble(
            labels.loss_shares(fns, tasks, y, y_pred, sample_weight),
            labels.loss_shares(fns, tasks, y, y_pred, sample_weight, auxiliary_heads.SUFFIX),
            factory.regularization(self) if regularization is None else regularization,
            part_shares,
            labels.task_presence(tasks, y, sample_weight),
        )

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
        tasks = self.trained_tasks or self.task_names
        return shared_variables(self.trainable_variables, self._reaching_tasks(tasks))


if IS_KERAS3:

    @register
    class MultiTaskModel(_MultiTaskBase):
        __doc__ = _MultiTaskBase.__doc__

        # Keras 3 revives a subclass as functional only with exactly this signature.
        def __init__(self, inputs, outputs, name=None, **kwargs):
            self._init_multitask(inputs, outputs, name, kwargs)

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            # Under a strategy Keras 3 builds from the replicas' first batches averaged, and a
            # string column (a FeatureSpec's categorical feature) has no mean: the first replica's.
            if iterator is not None:
                data_batch = first_replica_batch(self, iterator)
            return super()._maybe_symbolic_build(data_batch=data_batch)

else:

    @register
    class MultiTaskModel(_MultiTaskBase):
        __doc__ = _MultiTaskBase.__doc__

        # tf_keras writes a functional config only with exactly this signature.
        def __init__(self, inputs, outputs, name=None, trainable=True, **kwargs):
            self._init_multitask(inputs, outputs, name, dict(kwargs, trainable=trainable))

        def make_train_function(self, force=False):
            return execution.tf_keras_train_function(self, super().make_train_function, force)
