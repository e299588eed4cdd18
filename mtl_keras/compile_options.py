"""Checks of MultiTaskModel.compile's arguments; each error names the argument."""

from mtl_keras.backend import tf
from mtl_keras.losses import masked
from mtl_keras.losses.projection import GradientProjection
from mtl_keras.targets import check_task_keys


def resolve_losses(loss, task_names):
    """{task: per-example loss function or None}, one entry per head."""
    if not isinstance(loss, dict):
        raise ValueError(
            f"`loss` must be a dict {{task: loss}} over the tasks {list(task_names)}; "
            f"got {type(loss).__name__}."
        )
    check_task_keys(
        "loss", loss, task_names, task_names,
        "give each task a loss, or None for a head that is predicted but not trained",
    )
    fns = {task: masked.per_example_loss(loss[task], task) for task in task_names}
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


def check_metrics(metrics, task_names):
    """{task: [metric identifier, ...]}."""
    if metrics is None:
        return {}
    if not isinstance(metrics, dict):
        raise ValueError(
            f"`metrics` must be a dict {{task: [metric, ...]}}; got {type(metrics).__name__}."
        )
    check_task_keys("metrics", metrics, task_names)
    return {
        task: list(value) if isinstance(value, (list, tuple)) else [value]
        for task, value in metrics.items()
    }


def check_projection(projection, shared_variables, trained):
    """The projection, built for the trained tasks, or None."""
    if projection is None:
        return None
    if not isinstance(projection, GradientProjection):
        raise ValueError(
            "`gradient_projection` must be None or a mtl_keras.losses projection "
            f"(PCGrad, GradVac, MGDA, CAGrad, ParetoEfficient); got {projection!r}."
        )
    if not shared_variables:
        raise ValueError(
            "`gradient_projection` needs shared variables, and no variable of this model "
            f"is reached by two or more of the trained tasks {list(trained)}."
        )
    projection.build(len(trained), trained)
    return projection


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
