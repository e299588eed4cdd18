"""Builders whose tasks share a bottom or a set of experts: shared-bottom, MMoE/OMoE, PLE."""

from mtl_keras.layers import PLE, ExpertGate, SharedRepresentation
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
    model_inputs, features = features_of(inputs)
    tasks = task_names_of(task_names)
    shared = mlp(features, checks.units("bottom_units", bottom_units), "bottom")
    shared = SharedRepresentation(name="shared_representation")(shared)
    return build_model(
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
    model_inputs, features = features_of(inputs)
    tasks = task_names_of(task_names)
    gates, name = (1, "omoe") if shared_gate else (len(tasks), "mmoe")
    mixed = ExpertGate(num_experts, expert_units, gates, name=name)(features)
    per_task = mixed * len(tasks) if shared_gate else mixed
    return build_model(model_inputs, tasks, per_task, tower_units, task_types, name, auxiliary_tower_units)


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
    model_inputs, features = features_of(inputs)
    tasks = task_names_of(task_names)
    per_task = PLE(
        num_levels, len(tasks), num_task_experts, num_shared_experts, expert_units, name="ple"
    )(features)
    return build_model(model_inputs, tasks, per_task, tower_units, task_types, "ple", auxiliary_tower_units)
