"""One way to turn compile's arguments into a ``Trainer``, for every model that trains with one.

``MultiTaskModel.compile`` and the TFRS ``MultiTaskMixin`` differ only in when
they know their tasks and which variables each task reaches (at compile from
the functional graph; at the first ``fit`` from a trace of ``compute_loss``)
and in when Keras's own ``compile`` runs. Everything else, from the weighting
to the optimizer groups, is built here, in this order.
"""

from mtl_keras.backend import tf
from mtl_keras.training import arguments, gradient_modes, optimizers
from mtl_keras.training.step import Trainer


def resolve_weighting(task_weighting, loss_weights, projection_mode, task_gradient_method):
    """Checks compile's choices and returns the (unbuilt) TaskWeighting.

    Bad arguments thus fail at compile even where the trainer is built later.

    Args:
        task_weighting, loss_weights, projection_mode, task_gradient_method:
            ``MultiTaskModel.compile``'s.

    Returns:
        The ``TaskWeighting``, not built yet.

    Raises:
        ValueError: naming the argument with a value it does not accept.

    Example:
    >>> type(resolve_weighting("uncertainty", None, "exact", "loop")).__name__
    'UncertaintyWeighting'
    """
    arguments.check_choice("task_gradient_method", task_gradient_method, ("loop", "jacobian"))
    arguments.check_choice("projection_mode", projection_mode, ("exact", "fast"))
    return arguments.weighting(task_weighting, loss_weights)


def build_trainer(model, tasks, reached, weighting, *, optimizer, gradient_projection, loss_kinds,
                  log_gradient_cosine, projection_mode, task_gradient_method, task_start_steps,
                  skip_nonfinite_steps, compile_keras=None, per_example_losses=True, **trainer_options):
    """Builds the weighting, projection, gradient mode and optimizer groups, and the Trainer.

    Args:
        model: the Keras model; it gets ``_mtl_trainer`` and ``_mtl_state``
            (tracked, so checkpoints and SavedModels keep the training state).
        tasks: the trained tasks in order.
        reached: for each of ``model.trainable_variables``, the set of tasks that
            reach it.
        weighting: from ``resolve_weighting``.
        loss_kinds: each task's loss kind, as the weighting's ``build`` takes them.
        optimizer, gradient_projection, log_gradient_cosine, projection_mode,
            task_gradient_method, task_start_steps, skip_nonfinite_steps:
            ``MultiTaskModel.compile``'s.
        compile_keras: called with the main optimizer once it is resolved
            (Keras's own compile, which may wrap it in a LossScaleOptimizer);
            None when Keras's compile already ran with it.
        per_example_losses: whether the model's step can split its losses by
            rows (projections that draw sub-batches need it).
        **trainer_options: passed to ``Trainer`` (auxiliary weight, metrics, heads).

    Returns:
        The ``Trainer``.

    Example:
    >>> from mtl_keras import models
    >>> model = models.shared_bottom(keras.Input(shape=(4,)), ["ctr", "cvr"], bottom_units=(4,), tower_units=())
    >>> model.compile(optimizer="sgd", loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"})
    >>> type(model._mtl_trainer).__name__
    'Trainer'
    """
    weighting.build(tasks, loss_kinds, model)
    projection = arguments.projection(gradient_projection, model.shared_variables, tasks)
    if getattr(projection, "num_sub_batches", 1) > 1 and not per_example_losses:
        raise ValueError(
            f"`gradient_projection` {type(projection).__name__} draws sub-batches of each batch, "
            "which needs per-example losses; this model's loss comes whole per task."
        )
    per_task = bool(log_gradient_cosine) or projection is not None
    mode = gradient_modes.get(per_task, projection_mode, model, projection, task_gradient_method)
    main, groups = optimizers.resolve(
        optimizer, reached, model.trainable_variables, weighting.trainable_variables, tasks
    )
    if compile_keras is not None:
        compile_keras(main)
    trainer = Trainer(
        tasks, weighting, projection, mode, model.optimizer,
        [(model.optimizer if o is main else o, vs) for o, vs in groups],
        starts=arguments.task_starts(task_start_steps, tasks),
        skip_nonfinite=bool(skip_nonfinite_steps),
        **trainer_options,
    )
    model._mtl_state = trainer.state
    object.__setattr__(model, "_mtl_trainer", trainer)
    return trainer


def regularization(model):
    """The sum of the model's regularization losses (added once, unweighted), float32.

    Args:
        model: a built Keras model.

    Returns:
        A float32 scalar (0 without regularization losses).

    Example:
    >>> dense = keras.layers.Dense(1, kernel_initializer="ones", kernel_regularizer=keras.regularizers.L2(0.5))
    >>> model = keras.Sequential([keras.Input(shape=(2,)), dense])
    >>> float(regularization(model))
    1.0
    """
    if not model.losses:
        return tf.constant(0.0)
    return tf.add_n([tf.cast(x, tf.float32) for x in model.losses])
