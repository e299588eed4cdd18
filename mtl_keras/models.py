"""Builders of the standard multi-task architectures, each an uncompiled MultiTaskModel.

Every builder takes Keras inputs (one named tensor [B, D], or a dict of named
tensors that it concatenates), the task names, and ``task_types``: "binary"
(sigmoid head) or "regression" (linear head), one string for all tasks or a
dict by task. Heads are Dense layers named after their tasks. With
``auxiliary_tower_units`` (e.g. ``(4,)``) each task also gets a small
self-auxiliary tower on the same features and label (``mtl_keras.auxiliary``).
"""

import re

from mtl_keras.backend import keras
from mtl_keras.layers import PLE, ExpertGate, SharedRepresentation
from mtl_keras.layers import checks
from mtl_keras.model import MultiTaskModel

_HEAD_ACTIVATION = {"binary": "sigmoid", "regression": None}


def shared_bottom(
    inputs,
    task_names,
    bottom_units=(113,),
    tower_units=(8,),
    task_types="binary",
    auxiliary_tower_units=None,
):
    """Hard parameter sharing: one bottom MLP, one tower per task (Caruana, 1997)."""
    model_inputs, features = _features(inputs)
    tasks = _task_names(task_names)
    shared = _mlp(features, checks.units("bottom_units", bottom_units), "bottom")
    shared = SharedRepresentation(name="shared_representation")(shared)
    return _model(
        model_inputs, tasks, [shared] * len(tasks), tower_units, task_types, "shared_bottom",
        auxiliary_tower_units,
    )


def mmoe(
    inputs,
    task_names,
    num_experts=8,
    expert_units=(16,),
    tower_units=(8,),
    task_types="binary",
    shared_gate=False,
    auxiliary_tower_units=None,
):
    """MMoE (Ma et al., KDD 2018); ``shared_gate=True`` gives OMoE, one gate for all tasks."""
    model_inputs, features = _features(inputs)
    tasks = _task_names(task_names)
    gates = 1 if shared_gate else len(tasks)
    mixed = ExpertGate(num_experts, expert_units, gates, name="omoe" if shared_gate else "mmoe")(
        features
    )
    per_task = mixed * len(tasks) if shared_gate else mixed
    name = "omoe" if shared_gate else "mmoe"
    return _model(model_inputs, tasks, per_task, tower_units, task_types, name, auxiliary_tower_units)


def ple(
    inputs,
    task_names,
    num_levels=2,
    num_task_experts=1,
    num_shared_experts=1,
    expert_units=(16,),
    tower_units=(8,),
    task_types="binary",
    auxiliary_tower_units=None,
):
    """PLE (Tang et al., RecSys 2020): ``num_levels`` CGC levels, then one tower per task."""
    model_inputs, features = _features(inputs)
    tasks = _task_names(task_names)
    per_task = PLE(
        num_levels, len(tasks), num_task_experts, num_shared_experts, expert_units, name="ple"
    )(features)
    return _model(model_inputs, tasks, per_task, tower_units, task_types, "ple", auxiliary_tower_units)


def _features(inputs):
    """(the model's inputs, one [B, D] feature tensor)."""
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


def _task_names(task_names):
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


def _task_types(task_types, tasks):
    types = task_types if isinstance(task_types, dict) else {t: task_types for t in tasks}
    if set(types) != set(tasks):
        raise ValueError(f"`task_types` must have one entry per task {tasks}; got {sorted(types)}.")
    for task, kind in types.items():
        if kind not in _HEAD_ACTIVATION:
            raise ValueError(
                f"`task_types[{task!r}]` must be one of {sorted(_HEAD_ACTIVATION)}; got {kind!r}."
            )
    return types


def _mlp(x, units, prefix):
    for index, width in enumerate(units):
        x = keras.layers.Dense(width, activation="relu", name=f"{prefix}_{index}")(x)
    return x


def _model(model_inputs, tasks, per_task, tower_units, task_types, name, auxiliary_tower_units=None):
    types = _task_types(task_types, tasks)
    tower_units = checks.units("tower_units", tower_units) if tower_units else ()
    outputs = {task: _head(x, tower_units, task, types[task]) for task, x in zip(tasks, per_task)}
    auxiliary_outputs = None
    if auxiliary_tower_units is not None:
        units = checks.units("auxiliary_tower_units", auxiliary_tower_units)
        auxiliary_outputs = {
            task: _head(x, units, f"{task}_aux", types[task]) for task, x in zip(tasks, per_task)
        }
    return MultiTaskModel(model_inputs, outputs, name=name, auxiliary_outputs=auxiliary_outputs)


def _head(features, units, name, task_type):
    """A tower of ``units`` then the one-unit head named ``name``."""
    hidden = _mlp(features, units, f"{name}_tower")
    return keras.layers.Dense(1, activation=_HEAD_ACTIVATION[task_type], name=name)(hidden)


__all__ = ["mmoe", "ple", "shared_bottom"]
