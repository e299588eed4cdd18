"""What every builder shares: input handling, task names and types, towers and heads."""

import re

from mtl_keras.backend import keras
from mtl_keras.features import FeatureSpec
from mtl_keras.layers import SharedRepresentation, checks, conventions
from mtl_keras.model import MultiTaskModel

HEAD_ACTIVATION = {"binary": "sigmoid", "regression": None}


def prepare(inputs, task_names, kernel_arguments, multi_task=None):
    """What every builder starts from: (the task list, the resolved kernel arguments,
    the model's inputs, one [B, D] feature tensor, FeatureViews or None).

    ``kernel_arguments``: the builder's (kernel_initializer, bias_initializer,
    kernel_regularizer, bias_regularizer); ``multi_task``: the builder's name
    when it needs two or more tasks (the error names it).
    """
    tasks = task_names_of(task_names)
    if multi_task and len(tasks) < 2:
        raise ValueError(f"{multi_task} needs two or more `task_names`; got {tasks}.")
    args = conventions.resolve(*kernel_arguments)
    return (tasks, args) + features_of(inputs, tasks)


def task_columns(inputs, task_names, kernel_arguments, name):
    """``prepare`` for the builders of one column per task (two or more tasks): (tasks, kernel
    arguments, model inputs, the level-0 input of each column, FeatureViews or None).

    From a FeatureSpec column t reads task t's shared features (the columns are mixed across
    tasks, so a task table there would reach every task)."""
    tasks, args, model_inputs, features, views = prepare(inputs, task_names, kernel_arguments, name)
    columns = [views.task_shared[t] for t in tasks] if views is not None else [features] * len(tasks)
    return tasks, args, model_inputs, columns, views


def column_level(columns, tasks, width, depth, kernel_args, shared_representation=True):
    """One ReLU Dense layer ``<task>_column_<depth>`` per column. With ``shared_representation``
    level 0's outputs are marked as the shared representation (every task reads every column
    after the first fusion), so fast projections work."""
    columns = [
        dense(width, f"{task}_column_{depth}", kernel_args, activation="relu")(x)
        for task, x in zip(tasks, columns)
    ]
    if shared_representation and depth == 0:
        columns = [SharedRepresentation(name=f"{task}_representation")(x) for task, x in zip(tasks, columns)]
    return columns


def features_of(inputs, tasks=None):
    """(the model's inputs, one [B, D] feature tensor, FeatureViews or None).

    With a ``FeatureSpec`` the inputs are its raw features, the one tensor is
    what shared parts read (``FeatureViews.shared``), and the views say what
    each task's own parts read.
    """
    if isinstance(inputs, FeatureSpec):
        views = inputs.views(list(tasks))
        return views.inputs, views.shared, views
    return _dense_inputs(inputs) + (None,)


def _dense_inputs(inputs):
    if isinstance(inputs, dict):
        if not inputs:
            raise ValueError("`inputs` must not be an empty dict.")
        tensors = list(inputs.values())
        features = tensors[0] if len(tensors) == 1 else keras.layers.Concatenate(name="features")(
            tensors
        )
        return inputs, features
    if isinstance(inputs, (list, tuple)):
        raise ValueError("`inputs` must be one Keras input [B, D] or a dict of named inputs; got a list.")
    if len(inputs.shape) != 2:
        raise ValueError(f"`inputs` must have shape [B, D]; got {tuple(inputs.shape)}.")
    return inputs, inputs


def task_names_of(task_names):
    if isinstance(task_names, str) or not task_names:
        raise ValueError(f"`task_names` must be a non-empty list of strings; got {task_names!r}.")
    tasks = list(task_names)
    if len(set(tasks)) != len(tasks) or not all(
        isinstance(t, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_.\-]*", t) for t in tasks
    ):
        raise ValueError(
            "`task_names` must be distinct names of letters, digits, '_', '.', '-' "
            f"starting with a letter; got {tasks!r}."
        )
    return tasks


def task_types_of(task_types, tasks):
    types = task_types if isinstance(task_types, dict) else {t: task_types for t in tasks}
    if set(types) != set(tasks):
        raise ValueError(f"`task_types` must have one entry per task {tasks}; got {sorted(types)}.")
    for task, kind in types.items():
        if kind not in HEAD_ACTIVATION:
            raise ValueError(
                f"`task_types[{task!r}]` must be one of {sorted(HEAD_ACTIVATION)}; got {kind!r}."
            )
    return types


def mlp(x, units, prefix, kernel_args=None):
    """ReLU Dense layers of ``units``; ``kernel_args`` from ``conventions.resolve``."""
    for index, width in enumerate(units):
        x = dense(width, f"{prefix}_{index}", kernel_args, activation="relu")(x)
    return x


def dense(units, name, kernel_args=None, **kwargs):
    """A ``keras.layers.Dense`` following the builder's kernel arguments (its own initializers)."""
    return keras.layers.Dense(
        units, name=name, **conventions.dense_kwargs(kernel_args or conventions.resolve()), **kwargs
    )


def build_model(
    model_inputs, tasks, per_task, tower_units, task_types, name, auxiliary_tower_units=None, views=None,
    kernel_args=None,
):
    """The towers and heads on ``per_task`` (one tensor per task); with FeatureViews
    each tower also reads its task's own features."""
    types = task_types_of(task_types, tasks)
    per_task = tower_inputs(views, tasks, per_task)
    tower_units = checks.units("tower_units", tower_units) if tower_units else ()
    outputs = {
        task: head(x, tower_units, task, types[task], kernel_args) for task, x in zip(tasks, per_task)
    }
    auxiliary_outputs = auxiliary_heads(tasks, per_task, auxiliary_tower_units, types, kernel_args)
    return MultiTaskModel(model_inputs, outputs, name=name, auxiliary_outputs=auxiliary_outputs)


def tower_inputs(views, tasks, per_task):
    """What each task's tower reads: its ``per_task`` tensor, with FeatureViews next to the task's own features."""
    return per_task if views is None else [views.tower_input(task, x) for task, x in zip(tasks, per_task)]


def auxiliary_heads(tasks, per_task, auxiliary_tower_units, types, kernel_args=None):
    """{task: self-auxiliary head ``<task>_aux`` on its ``per_task`` tensor}, or None without
    ``auxiliary_tower_units``; ``types``: the task types by task."""
    if auxiliary_tower_units is None:
        return None
    units = checks.units("auxiliary_tower_units", auxiliary_tower_units)
    return {task: head(x, units, f"{task}_aux", types[task], kernel_args) for task, x in zip(tasks, per_task)}


def head(features, units, name, task_type, kernel_args=None):
    """A tower of ``units`` then the one-unit head named ``name``."""
    hidden = mlp(features, units, f"{name}_tower", kernel_args)
    return dense(1, name, kernel_args, activation=HEAD_ACTIVATION[task_type])(hidden)
