"""MultiTaskMixin: mtl_keras's task weighting and gradient projection for a ``tfrs.Model``.

Convention: ``compute_loss(features, training)`` returns ``{task: scalar
loss}`` (a TFRS task's return value: ``tfrs.tasks.Retrieval``,
``tfrs.tasks.Ranking``, or any scalar), each the task's loss on this
replica's batch (its share of the global loss under a distribution strategy,
as ``tfrs.Model.train_step`` takes it). Everything else is ``MultiTaskModel``'s
training step (``mtl_keras.training.step.Trainer``): the losses are weighted,
the shared variables' per-task gradients projected, the groups' optimizers
applied, and ``fit`` logs ``loss``, ``<task>_loss``, ``<task>_weight``,
``grad_cosine/<a>__<b>`` beside the model's own metrics (the TFRS tasks'
``FactorizedTopK``, RMSE, ...). The model's regularization losses are added
once, unweighted.

The trainer is built once the model's variables and tasks are known: at
``compile`` when ``sample_features`` is given (a batch, a dataset or a nested
TensorSpec), else at the first ``fit`` / ``evaluate`` from its ``x``. The
tasks are the keys ``compute_loss`` returns (in that order, or
``task_names``'s), and the shared variables those two or more task losses
reach (``mtl_keras.tfrs.sharing``).

Example (``examples/tfrs_multitask.py`` runs a whole one)::

    class Recommender(MultiTaskMixin, tfrs.Model):
        def compute_loss(self, features, training=False):
            q, c = self.user_model(features["user_id"]), self.movie_model(features["movie_id"])
            return {"retrieval": self.retrieval_task(q, c),
                    "rating": self.rating_task(labels=features["rating"], predictions=self.rate(q, c))}

    model.compile(optimizer="adam", task_weighting="uncertainty", gradient_projection="pcgrad")
"""

from mtl_keras.backend import keras, tf, tfrs_task_loss
from mtl_keras.training import arguments, factory
from mtl_keras.training.sharing import shared_variables
from mtl_keras.tfrs.sharing import batch_spec, features_of, task_variables


def default_loss_kinds(model, tasks):
    """{task: "classification" | "regression"} from the TFRS task objects named after a task:
    a layer named ``<task>`` or an attribute ``<task>``, ``<task>_task`` or ``task_<task>``.
    Retrieval (a softmax cross-entropy) is classification; a Ranking task follows its loss
    as ``MultiTaskModel`` does; anything else is regression."""
    import tensorflow_recommenders as tfrs

    found = {}
    for attribute, value in vars(model).items():
        if isinstance(value, tfrs.tasks.Task):
            for key in (attribute, attribute.removesuffix("_task"), attribute.removeprefix("task_"), value.name):
                found.setdefault(key, value)
    kinds = {}
    for task in tasks:
        value = found.get(task)
        if isinstance(value, tfrs.tasks.Retrieval):
            kinds[task] = "classification"
        elif value is not None and tfrs_task_loss(value) is not None:
            kinds[task] = arguments.loss_kinds({task: tfrs_task_loss(value)})[task]
        else:
            kinds[task] = "regression"
    return kinds


class MultiTaskMixin:
    """Gives a ``tfrs.Model`` (or any Keras model with ``compute_loss``) multi-task training.

    Put it first among the bases: ``class M(MultiTaskMixin, tfrs.Model)``.

    Example:
    >>> import tensorflow_recommenders as tfrs
    >>> class Ranker(MultiTaskMixin, tfrs.Model):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.bottom = keras.layers.Dense(4, activation="relu")
    ...         self.rating, self.watched = keras.layers.Dense(1), keras.layers.Dense(1, activation="sigmoid")
    ...         self.rating_task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError())
    ...         self.watched_task = tfrs.tasks.Ranking(loss=keras.losses.BinaryCrossentropy())
    ...     def compute_loss(self, features, training=False):
    ...         shared = self.bottom(features["x"])
    ...         return {"rating": self.rating_task(labels=features["rating"], predictions=self.rating(shared)),
    ...                 "watched": self.watched_task(labels=features["watched"], predictions=self.watched(shared))}
    >>> model = Ranker()
    >>> model.compile(optimizer="adam", task_weighting="uncertainty", gradient_projection="pcgrad")
    >>> data = {"x": np.random.default_rng(0).normal(size=(64, 3)).astype("float32"),
    ...         "rating": np.full((64, 1), 4.0, "float32"), "watched": np.ones((64, 1), "float32")}
    >>> history = model.fit(tf.data.Dataset.from_tensor_slices(data).batch(16), epochs=1, verbose=0)
    >>> sorted(key for key in history.history if key.endswith("_weight"))
    ['rating_weight', 'watched_weight']
    """

    _mtl_trainer = None
    _mtl_pending = None
    _mtl_reached = None
    task_names = None

    def compile(self, optimizer="adam", task_weighting=None, gradient_projection=None,
                log_gradient_cosine=False, projection_mode="exact", task_gradient_method="loop",
                loss_weights=None, task_start_steps=None, skip_nonfinite_steps=False,
                loss_kinds=None, task_names=None, sample_features=None, **kwargs):
        """``MultiTaskModel.compile``'s training arguments, less ``loss`` and ``metrics``
        (``compute_loss`` and the TFRS tasks hold them).

        Args:
            optimizer, task_weighting, gradient_projection, log_gradient_cosine,
            projection_mode, task_gradient_method, loss_weights, task_start_steps,
            skip_nonfinite_steps: as for ``MultiTaskModel.compile``. The groups of a
                dict ``optimizer`` ("shared", a task, "default") come from the trace.
                ``projection_mode="fast"`` needs ``RecordsRepresentation`` layers
                (``mtl_keras.layers.SharedRepresentation``, ExpertGate, CGCLayer) whose
                variables are all shared.
            loss_kinds: {task: "classification" | "regression"} for weightings that
                care (uncertainty); default ``default_loss_kinds``.
            task_names: the trained tasks in order; default the keys of ``compute_loss``'s dict.
            sample_features: a batch, ``tf.data.Dataset`` or nested TensorSpec of what
                ``compute_loss`` gets, to build the trainer now rather than at the first ``fit``.
            **kwargs: to ``keras.Model.compile`` (``run_eagerly``, ``steps_per_execution``).
        """
        if isinstance(optimizer, dict):
            optimizer = {group: keras.optimizers.get(value) for group, value in optimizer.items()}
            main = optimizer.get("default") or optimizer.get("shared") or next(iter(optimizer.values()))
        else:
            optimizer = main = keras.optimizers.get(optimizer)
        weighting = factory.resolve_weighting(task_weighting, loss_weights, projection_mode, task_gradient_method)
        super().compile(optimizer=main, **kwargs)
        object.__setattr__(self, "_mtl_trainer", None)
        object.__setattr__(self, "_mtl_pending", dict(
            optimizer=optimizer, weighting=weighting, gradient_projection=gradient_projection,
            log_gradient_cosine=log_gradient_cosine, projection_mode=projection_mode,
            task_gradient_method=task_gradient_method, task_start_steps=task_start_steps,
            skip_nonfinite_steps=bool(skip_nonfinite_steps), loss_kinds=loss_kinds, task_names=task_names,
        ))
        if sample_features is not None:
            self.build_trainer(sample_features)

    def build_trainer(self, sample_features):
        """Traces ``compute_loss`` on ``sample_features``'s spec and builds the trainer (once)."""
        if self._mtl_trainer is not None:
            return self._mtl_trainer
        pending = self._mtl_pending
        if pending is None:
            raise RuntimeError("Call `compile` before training a model with MultiTaskMixin.")
        tasks, reached = task_variables(self, batch_spec(sample_features), pending["task_names"])
        object.__setattr__(self, "task_names", tasks)
        object.__setattr__(self, "_mtl_reached", reached)
        kinds = dict(default_loss_kinds(self, tasks), **(pending["loss_kinds"] or {}))
        # Keras's compile already ran, with the main optimizer of the same dict.
        return factory.build_trainer(
            self, tasks, reached, pending["weighting"], loss_kinds=kinds, per_example_losses=False,
            **{k: pending[k] for k in (
                "optimizer", "gradient_projection", "log_gradient_cosine", "projection_mode",
                "task_gradient_method", "task_start_steps", "skip_nonfinite_steps",
            )},
        )

    @property
    def training_state(self):
        """The TrainingState (weighting, projection, group optimizers, step), or None."""
        return getattr(self, "_mtl_state", None)

    @property
    def shared_variables(self):
        """Trainable variables whose gradient depends on two or more task losses (after the trace)."""
        if self._mtl_reached is None:
            raise RuntimeError("`shared_variables` is known once the trainer is built (compile's "
                               "`sample_features`, or the first `fit`).")
        return shared_variables(self.trainable_variables, self._mtl_reached)

    @property
    def metrics(self):
        own = super().metrics
        return (self._mtl_trainer.trackers.all() if self._mtl_trainer else []) + own

    def fit(self, x=None, y=None, *args, callbacks=None, **kwargs):
        """``keras.Model.fit`` with the trainer built from ``x`` and its hooks added."""
        trainer = self.build_trainer(x if y is None else (x, y))
        return super().fit(x, y, *args, callbacks=trainer.callbacks(callbacks, self.distribute_strategy), **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self.build_trainer(x if y is None else (x, y))
        return super().evaluate(x, y, *args, **kwargs)

    def train_step(self, data):
        """compute_loss -> weights -> (projected) gradients -> optimizers -> logs."""
        trainer = self._mtl_trainer
        with tf.GradientTape(persistent=trainer.persistent) as tape:
            step = self._mtl_assemble(self.compute_loss(features_of(data), training=True))
        gram, finite = trainer.apply(tape, step)
        return self._mtl_logs(trainer.log(step, gram=gram, finite=finite))

    def test_step(self, data):
        step = self._mtl_assemble(self.compute_loss(features_of(data), training=False))
        return self._mtl_logs(self._mtl_trainer.log(step, training=False))

    def _mtl_assemble(self, losses):
        trainer = self._mtl_trainer
        shares = [tf.cast(losses[task], tf.float32) for task in trainer.tasks]
        return trainer.assemble(shares, [tf.constant(0.0)] * len(shares), factory.regularization(self))

    def _mtl_logs(self, logs):
        # The model's own metrics (the TFRS tasks'), under names ours do not take.
        for metric in super().metrics:
            logs.setdefault(metric.name, metric.result())
        return logs
