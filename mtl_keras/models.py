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
from mtl_keras.layers import (
    PLE,
    CrossStitch,
    ExpertGate,
    HardConcreteRouter,
    PartitionedNorm,
    SharedRepresentation,
    StarDense,
)
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


def snr(
    inputs,
    task_names,
    mode="trans",
    num_subnetworks=(3, 3),
    subnetwork_units=(32,),
    tower_units=(8,),
    task_types="binary",
    l0_penalty=1e-4,
    auxiliary_tower_units=None,
):
    """SNR (Ma et al., AAAI 2019): levels of sub-networks joined by hard-concrete routers.

    Level k holds ``num_subnetworks[k]`` one-layer ReLU sub-networks of
    ``subnetwork_units[k]`` units (one entry serves every level). Level 1 reads
    the input; a ``HardConcreteRouter`` (``mode`` "trans" or "avg") feeds each
    next level, and a last router feeds the task towers.
    """
    model_inputs, features = _features(inputs)
    tasks = _task_names(task_names)
    levels = list(checks.units("num_subnetworks", num_subnetworks))
    units = list(checks.units("subnetwork_units", subnetwork_units))
    units = units * len(levels) if len(units) == 1 else units
    if len(units) != len(levels):
        raise ValueError(
            f"`subnetwork_units` must have one entry or one per level ({len(levels)}); got {units}."
        )
    lower = [
        keras.layers.Dense(units[0], activation="relu", name=f"subnetwork_0_{i}")(features)
        for i in range(levels[0])
    ]
    for level in range(1, len(levels)):
        routed = _router(levels[level], mode, units[level], l0_penalty, f"router_{level - 1}")(lower)
        lower = [
            keras.layers.Dense(units[level], activation="relu", name=f"subnetwork_{level}_{i}")(v)
            for i, v in enumerate(routed)
        ]
    per_task = _router(len(tasks), mode, units[-1], l0_penalty, f"router_{len(levels) - 1}")(lower)
    return _model(model_inputs, tasks, per_task, tower_units, task_types, f"snr_{mode}", auxiliary_tower_units)


def _router(num_outputs, mode, units, l0_penalty, name):
    return HardConcreteRouter(
        num_outputs, mode=mode, units=units if mode == "trans" else None, l0_penalty=l0_penalty, name=name
    )


def cross_stitch(
    inputs,
    task_names,
    units=(64, 32),
    tower_units=(8,),
    task_types="binary",
    auxiliary_tower_units=None,
):
    """Cross-stitch network (Misra et al., CVPR 2016): one column per task, a
    ``CrossStitch`` unit after each layer, then the towers."""
    model_inputs, features = _features(inputs)
    tasks = _task_names(task_names)
    if len(tasks) < 2:
        raise ValueError(f"cross_stitch needs two or more `task_names`; got {tasks}.")
    columns = [features] * len(tasks)
    for depth, width in enumerate(checks.units("units", units)):
        columns = [
            keras.layers.Dense(width, activation="relu", name=f"{task}_column_{depth}")(x)
            for task, x in zip(tasks, columns)
        ]
        columns = CrossStitch(len(tasks), name=f"cross_stitch_{depth}")(columns)
    return _model(model_inputs, tasks, columns, tower_units, task_types, "cross_stitch", auxiliary_tower_units)


def esmm(inputs, tower_units=(64, 32), auxiliary_tower_units=None):
    """ESMM (Ma et al., SIGIR 2018): pCTCVR = pCTR * pCVR over the entire space.

    Heads "ctr", "cvr" and "ctcvr" (the product). Train on every impression with
    losses on ctr (label: click) and ctcvr (label: click AND conversion) only:
    ``compile(loss={"ctr": "binary_crossentropy", "cvr": None,
    "ctcvr": "binary_crossentropy"})``; pCVR has no direct label. The two
    towers share the input features (the paper's shared embeddings). With
    ``auxiliary_tower_units`` the ctr task gets a self-auxiliary tower.
    """
    model_inputs, features = _features(inputs)
    units = checks.units("tower_units", tower_units)
    ctr = _head(features, units, "ctr", "binary")
    cvr = _head(features, units, "cvr", "binary")
    ctcvr = keras.layers.Multiply(name="ctcvr")([ctr, cvr])
    auxiliary_outputs = None
    if auxiliary_tower_units is not None:
        aux_units = checks.units("auxiliary_tower_units", auxiliary_tower_units)
        auxiliary_outputs = {"ctr": _head(features, aux_units, "ctr_aux", "binary")}
    return MultiTaskModel(
        model_inputs, {"ctr": ctr, "cvr": cvr, "ctcvr": ctcvr}, name="esmm",
        auxiliary_outputs=auxiliary_outputs,
    )


def star(
    inputs,
    domain_ids,
    task_names,
    units=(64, 32),
    num_domains=None,
    task_types="binary",
    auxiliary_units=(32, 16),
    domain_embedding_dim=8,
    auxiliary_tower_units=None,
):
    """STAR (Sheng et al., CIKM 2021) for several domains and tasks.

    Features -> ``PartitionedNorm`` -> star-topology ``StarDense`` layers of
    ``units``; each task's logit is a domain-specific ``StarDense(1)`` plus the
    paper's auxiliary network (domain embedding concatenated with the
    features, a 2-layer MLP of ``auxiliary_units``, one logit), and the head
    is sigmoid (binary) or identity (regression) of their sum.

    Args:
        domain_ids: a Keras integer input [B] or [B, 1] (part of the model's inputs).
        num_domains: number of domains P.
    """
    model_inputs, features = _features(inputs)
    tasks = _task_names(task_names)
    types = _task_types(task_types, tasks)
    domains = checks.positive_int("num_domains", num_domains)
    named = model_inputs if isinstance(model_inputs, dict) else {model_inputs.name: model_inputs}
    model_inputs = dict(named, **{domain_ids.name: domain_ids})
    hidden = PartitionedNorm(domains, name="partitioned_norm")(features, domain_ids)
    for depth, width in enumerate(checks.units("units", units)):
        hidden = StarDense(width, domains, activation="relu", name=f"star_{depth}")(hidden, domain_ids)
    hidden = SharedRepresentation(name="shared_representation")(hidden)
    domain = keras.layers.Flatten(name="domain_flat")(
        keras.layers.Embedding(domains, domain_embedding_dim, name="domain_embedding")(domain_ids)
    )
    auxiliary_input = keras.layers.Concatenate(name="auxiliary_input")([features, domain])
    outputs = {}
    for task in tasks:
        main = StarDense(1, domains, name=f"{task}_star_logit")(hidden, domain_ids)
        side = _mlp(auxiliary_input, checks.units("auxiliary_units", auxiliary_units), f"{task}_auxiliary_net")
        side = keras.layers.Dense(1, name=f"{task}_auxiliary_logit")(side)
        logit = keras.layers.Add(name=f"{task}_logit")([main, side])
        outputs[task] = keras.layers.Activation(_HEAD_ACTIVATION[types[task]] or "linear", name=task)(logit)
    auxiliary_outputs = None
    if auxiliary_tower_units is not None:
        aux_units = checks.units("auxiliary_tower_units", auxiliary_tower_units)
        auxiliary_outputs = {t: _head(hidden, aux_units, f"{t}_aux", types[t]) for t in tasks}
    return MultiTaskModel(model_inputs, outputs, name="star", auxiliary_outputs=auxiliary_outputs)


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


__all__ = ["cross_stitch", "esmm", "mmoe", "ple", "shared_bottom", "snr", "star"]
