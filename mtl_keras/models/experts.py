"""Builders whose tasks share a bottom or a set of experts: shared-bottom, MMoE/OMoE, PLE."""

from mtl_keras.backend import keras
from mtl_keras.layers import PLE, CGCLayer, ExpertGate, SharedRepresentation
from mtl_keras.layers import checks
from mtl_keras.models.common import build_model, features_of, mlp, task_names_of


def shared_bottom(
    inputs,
    task_names,
    bottom_units=(113,),
    tower_units=(8,),
    task_types="binary",
    auxiliary_tower_units=None,
):
    """Hard parameter sharing: one bottom MLP, one tower per task (Caruana, 1997)."""
    tasks = task_names_of(task_names)
    model_inputs, features, views = features_of(inputs, tasks)
    shared = mlp(features, checks.units("bottom_units", bottom_units), "bottom")
    shared = SharedRepresentation(name="shared_representation")(shared)
    return build_model(
        model_inputs, tasks, [shared] * len(tasks), tower_units, task_types, "shared_bottom",
        auxiliary_tower_units, views,
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
    """MMoE (Ma et al., KDD 2018); ``shared_gate=True`` gives OMoE, one gate for all tasks.

    From a ``FeatureSpec`` the experts read the shared features of every task,
    task t's gate the shared tables of task t's ``task_features`` (OMoE's one
    gate, the union), and each task's tower the mixture next to the task's own
    features.
    """
    tasks = task_names_of(task_names)
    model_inputs, features, views = features_of(inputs, tasks)
    gates, name = (1, "omoe") if shared_gate else (len(tasks), "mmoe")
    gate_inputs = None
    if views is not None and not shared_gate:
        gate_inputs = [views.task_shared[task] for task in tasks]
    mixed = ExpertGate(num_experts, expert_units, gates, name=name)(features, gate_inputs=gate_inputs)
    per_task = mixed * len(tasks) if shared_gate else mixed
    return build_model(
        model_inputs, tasks, per_task, tower_units, task_types, name, auxiliary_tower_units, views
    )


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
    tasks = task_names_of(task_names)
    model_inputs, features, views = features_of(inputs, tasks)
    if views is None:
        per_task = PLE(
            num_levels, len(tasks), num_task_experts, num_shared_experts, expert_units, name="ple"
        )(features)
    else:
        # The PLE layer reads one tensor; its CGC levels take the task inputs apart.
        per_task = _cgc_inputs(views, tasks)
        levels = checks.positive_int("num_levels", num_levels)
        for level in range(levels):
            per_task = CGCLayer(
                len(tasks), num_task_experts, num_shared_experts, expert_units,
                is_last_level=level == levels - 1, name=f"cgc_{level}",
            )(per_task)
    return build_model(
        model_inputs, tasks, per_task, tower_units, task_types, "ple", auxiliary_tower_units, views
    )


def _cgc_inputs(views, tasks):
    """PLE's first level from a FeatureSpec: task t's experts and gate read task t's shared
    features, the shared experts the union. Task tables stay out: below the last level the
    shared gate mixes every task's experts, so a task table there would reach other tasks.
    CGC wants one width for the task inputs; differing ones are projected to the union's."""
    task_inputs = [views.task_shared[task] for task in tasks]
    width = views.shared.shape[-1]
    if len({x.shape[-1] for x in task_inputs}) > 1:
        task_inputs = [
            x if x.shape[-1] == width else keras.layers.Dense(width, name=f"{task}_expert_input")(x)
            for task, x in zip(tasks, task_inputs)
        ]
    return task_inputs + [views.shared]
