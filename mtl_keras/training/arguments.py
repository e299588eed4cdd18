"""MultiTaskModel.compile's arguments: their checks (each error names the argument),
and their round trip through a `.keras` file's compile config or a tf_keras SavedModel."""

import json
import os
import tempfile

import numpy as np

from mtl_keras import projection as projection_lib
from mtl_keras import weighting as weighting_lib
from mtl_keras.backend import keras, saved_training_config, tf
from mtl_keras.training.labels import check_task_keys, per_example_loss


def loss_dict(loss, task_names):
    """compile's ``loss`` as {task: loss}, from any form Keras takes for a multi-output model:
    a dict by task, a list with one entry per head in the model's task order, or one loss
    (a name, a ``Loss`` or a function) that every task gets."""
    task_names = list(task_names)
    if isinstance(loss, dict):
        return loss
    if isinstance(loss, (list, tuple)):
        if len(loss) != len(task_names):
            raise ValueError(
                f"`loss` as a list must have one entry per task {task_names} "
                f"({len(task_names)}), in that order; got {len(loss)}."
            )
        return dict(zip(task_names, loss))
    if loss is None:
        raise ValueError(
            f"`loss` must be given: a dict {{task: loss}} over the tasks {task_names}, a list "
            "with one loss per task, or one loss for every task."
        )
    return {task: loss for task in task_names}


def resolve_losses(loss, task_names):
    """{task: per-example loss function or None}, one entry per head, from ``loss_dict``'s dict."""
    check_task_keys(
        "loss", loss, task_names, task_names,
        "give each task a loss, or None for a head that is predicted but not trained",
    )
    fns = {task: per_example_loss(loss[task], task) for task in task_names}
    if all(fn is None for fn in fns.values()):
        raise ValueError("`loss` must give at least one task a loss; all are None.")
    return fns


def loss_kinds(loss):
    """"classification" for cross-entropy and hinge losses, else "regression"."""
    kinds = {}
    for task, identifier in loss.items():
        name = identifier if isinstance(identifier, str) else type(identifier).__name__
        name = getattr(identifier, "__name__", name).lower()
        kinds[task] = "classification" if ("crossentropy" in name or "hinge" in name) else "regression"
    return kinds


def check_metrics(metrics, task_names, trained=None):
    """{task: [metric identifier, ...]} from compile's ``metrics``.

    Accepted as either Keras accepts them: a dict {task: metric or [metric,
    ...]}; a list of metrics, which every trained task gets (tf_keras's rule
    for one list); a list with one entry (a metric, a list of them or None)
    per head in the model's task order, told apart by holding a list or None
    (Keras 3's nested form). A metric is a name, a ``Metric`` or a function.
    """
    if metrics is None:
        return {}
    trained = list(task_names if trained is None else trained)
    if isinstance(metrics, (list, tuple)):
        if not any(isinstance(m, (list, tuple)) or m is None for m in metrics):
            return {task: list(metrics) for task in trained} if metrics else {}
        if len(metrics) != len(task_names):
            raise ValueError(
                "`metrics` given as a list of lists needs one entry per head, in the order "
                f"{list(task_names)}; got {len(metrics)} entries."
            )
        metrics = {task: m for task, m in zip(task_names, metrics) if m is not None}
    if not isinstance(metrics, dict):
        raise ValueError(
            "`metrics` must be a dict {task: [metric, ...]} or a list of metrics for every "
            f"task; got {type(metrics).__name__}."
        )
    check_task_keys("metrics", metrics, task_names)
    return {
        task: list(value) if isinstance(value, (list, tuple)) else [value]
        for task, value in metrics.items()
        if value is not None
    }


def weighting(task_weighting, loss_weights):
    """The TaskWeighting; Keras's ``loss_weights`` (a dict by task) is a static weighting."""
    if loss_weights is None:
        return weighting_lib.get(task_weighting)
    if task_weighting is not None:
        raise ValueError(
            "`loss_weights` and `task_weighting` both set the task weights; pass one "
            f"(got loss_weights={loss_weights!r} and task_weighting={task_weighting!r})."
        )
    if not isinstance(loss_weights, dict):
        raise ValueError(
            f"`loss_weights` must be a dict {{task: float}}, as `loss` is; got {loss_weights!r}."
        )
    return weighting_lib.StaticWeighting(loss_weights)


def projection(gradient_projection, shared_variables, trained):
    """The projection, built for the trained tasks, or None."""
    value = projection_lib.get(gradient_projection)
    if value is None:
        return None
    if not shared_variables:
        raise ValueError(
            "`gradient_projection` needs shared variables, and no variable of this model "
            f"is reached by two or more of the trained tasks {list(trained)}."
        )
    value.num_parameters = sum(int(np.prod(v.shape)) for v in shared_variables)
    value.build(len(trained), trained)
    return value


def task_starts(task_start_steps, trained):
    """[T] int64 start steps in task order, or None."""
    if not task_start_steps:
        return None
    if not isinstance(task_start_steps, dict):
        raise ValueError(f"`task_start_steps` must be a dict {{task: step}}; got {task_start_steps!r}.")
    check_task_keys("task_start_steps", task_start_steps, trained)
    for task, step in task_start_steps.items():
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"`task_start_steps[{task!r}]` must be an integer >= 0; got {step!r}.")
    return tf.constant([task_start_steps.get(t, 0) for t in trained], tf.int64)


def check_choice(argument, value, choices):
    if value not in choices:
        raise ValueError(f"`{argument}` must be one of {list(choices)}; got {value!r}.")
    return value


def non_negative(argument, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"`{argument}` must be a number >= 0; got {value!r}.")
    return float(value)


# ------------------------------------------------------------ `.keras` round trip
_OBJECTS = ("task_weighting", "gradient_projection")


def serialize(arguments):
    config = dict(arguments)
    optimizer = config["optimizer"]
    config["optimizer"] = (
        {group: _optimizer(value) for group, value in optimizer.items()}
        if isinstance(optimizer, dict)
        else _optimizer(optimizer)
    )
    config["loss"] = {task: _object(value) for task, value in config["loss"].items()}
    config["metrics"] = {task: [_metric(m) for m in ms] for task, ms in config["metrics"].items()}
    for key in _OBJECTS:
        value = config[key]
        if value is not None and not isinstance(value, (dict, str)):
            config[key] = keras.saving.serialize_keras_object(value)
    return config


def deserialize(config):
    arguments = dict(config)
    optimizer = arguments["optimizer"]
    if isinstance(optimizer, dict) and "class_name" not in optimizer:
        arguments["optimizer"] = {g: keras.optimizers.get(v) for g, v in optimizer.items()}
    else:
        arguments["optimizer"] = keras.optimizers.get(optimizer)
    # Objects revive through Keras's registry (a user's registered subclass too).
    arguments["task_weighting"] = _revive(arguments.get("task_weighting"), weighting_lib.get)
    arguments["gradient_projection"] = _revive(arguments.get("gradient_projection"), projection_lib.get)
    return arguments


def for_saved_model(optimizer, config):
    """tf_keras's training config of a SavedModel: Keras's keys, and our arguments as JSON."""
    return dict(
        optimizer=optimizer, loss=None, metrics=None, weighted_metrics=None, loss_weights=None,
        # Optimizer configs hold NumPy scalars.
        mtl_keras=json.dumps(config, default=lambda value: value.item()),
    )


def compile_saved_model(model, kwargs):
    """Compiles a model tf_keras's SavedModel loader revives, as it was compiled when saved.

    The loader hands ``compile`` the revived optimizer and training state
    (weighting, projection, group optimizers, step) with their saved values,
    and tf_keras itself would start from fresh optimizer slots: both are read
    into the newly compiled ones, so training resumes where it stopped.
    """
    revived = {
        name: value for name, value in (("optimizer", model.optimizer), ("state", model.training_state))
        if value is not None
    }
    training_config = saved_training_config(model)
    model.compile(**deserialize(json.loads(training_config["mtl_keras"])), **kwargs)
    if not revived:
        return
    with tempfile.TemporaryDirectory() as folder:
        path = tf.train.Checkpoint(**revived).write(os.path.join(folder, "state"))
        compiled = {"optimizer": model.optimizer, "state": model.training_state}
        tf.train.Checkpoint(**{name: compiled[name] for name in revived}).read(path).expect_partial()


def _revive(value, get):
    if isinstance(value, dict) and "class_name" in value:
        return get(value)
    return value


def _optimizer(value):
    return value if isinstance(value, str) else keras.optimizers.serialize(value)


def _metric(value):
    # Keras 3 revives the config of its own metric functions as the class of the same
    # name, and fails ("Expected 'config' to be a dict"): their name revives in both.
    module = getattr(value, "__module__", "") or ""
    if not isinstance(value, keras.metrics.Metric) and module.split(".")[0] in ("keras", "tf_keras"):
        return value.__name__
    return _object(value)


def _object(value):
    if isinstance(value, str) or value is None:
        return value
    return keras.saving.serialize_keras_object(value)
