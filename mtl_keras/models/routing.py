"""Builders that learn how tasks share: SNR routers and cross-stitch units."""

from mtl_keras.backend import keras
from mtl_keras.layers import CrossStitch, HardConcreteRouter
from mtl_keras.layers import checks, conventions
from mtl_keras.models.common import build_model, dense, features_of, task_names_of


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
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """SNR (Ma et al., AAAI 2019): levels of sub-networks joined by hard-concrete routers.

    Level k holds ``num_subnetworks[k]`` one-layer ReLU sub-networks of
    ``subnetwork_units[k]`` units (one entry serves every level). Level 1 reads
    the input; a ``HardConcreteRouter`` (``mode`` "trans" or "avg") feeds each
    next level, and a last router feeds the task towers.

    Args:
        inputs: Keras inputs (a tensor [B, D] or a dict of them, concatenated) or a
            ``FeatureSpec``.
        task_names: the tasks, in order; each names its head and output.
        mode: "trans" (SNR-Trans: a learnt transform per edge) or "avg" (SNR-Avg).
        num_subnetworks: sub-networks per level.
        subnetwork_units: each level's sub-network width (one entry: every level).
        tower_units: hidden widths of each task's ReLU tower.
        task_types: "binary" (sigmoid head) or "regression" (linear head); one
            string for every task or a dict by task.
        l0_penalty: weight of the routers' expected-L0 penalty (>= 0).
        auxiliary_tower_units: widths of a self-auxiliary tower per task (Wang et
            al., 2022), trained and dropped at export; None: none.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            as ``keras.layers.Dense`` takes them, for every layer with a kernel the
            model creates (``mtl_keras.layers.conventions``).

    Example:
    >>> model = snr(keras.Input(shape=(6,)), ["ctr", "cvr"], num_subnetworks=(2, 2), subnetwork_units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks = task_names_of(task_names)
    args = conventions.resolve(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    model_inputs, features, views = features_of(inputs, tasks)
    levels = list(checks.units("num_subnetworks", num_subnetworks))
    units = list(checks.units("subnetwork_units", subnetwork_units))
    units = units * len(levels) if len(units) == 1 else units
    if len(units) != len(levels):
        raise ValueError(
            f"`subnetwork_units` must have one entry or one per level ({len(levels)}); got {units}."
        )
    lower = [
        dense(units[0], f"subnetwork_0_{i}", args, activation="relu")(features)
        for i in range(levels[0])
    ]
    for level in range(1, len(levels)):
        routed = _router(levels[level], mode, units[level], l0_penalty, f"router_{level - 1}", args)(lower)
        lower = [
            dense(units[level], f"subnetwork_{level}_{i}", args, activation="relu")(v)
            for i, v in enumerate(routed)
        ]
    per_task = _router(len(tasks), mode, units[-1], l0_penalty, f"router_{len(levels) - 1}", args)(lower)
    return build_model(
        model_inputs, tasks, per_task, tower_units, task_types, f"snr_{mode}", auxiliary_tower_units, views,
        args,
    )


def _router(num_outputs, mode, units, l0_penalty, name, args):
    return HardConcreteRouter(
        num_outputs, mode=mode, units=units if mode == "trans" else None, l0_penalty=l0_penalty, name=name,
        kernel_initializer=args["kernel_initializer"], kernel_regularizer=args["kernel_regularizer"],
    )


def cross_stitch(
    inputs,
    task_names,
    units=(64, 32),
    tower_units=(8,),
    task_types="binary",
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """Cross-stitch network (Misra et al., CVPR 2016): task columns mixed by ``CrossStitch`` units.

    One column per task, a ``CrossStitch`` unit after each layer, then the towers.

    Args:
        inputs: Keras inputs (a tensor [B, D] or a dict of them, concatenated) or a
            ``FeatureSpec``.
        task_names: the tasks, in order; each names its head and output.
        units: widths of the column layers, a cross-stitch unit after each.
        tower_units: hidden widths of each task's ReLU tower.
        task_types: "binary" (sigmoid head) or "regression" (linear head); one
            string for every task or a dict by task.
        auxiliary_tower_units: widths of a self-auxiliary tower per task (Wang et
            al., 2022), trained and dropped at export; None: none.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            as ``keras.layers.Dense`` takes them, for every layer with a kernel the
            model creates (``mtl_keras.layers.conventions``).

    Example:
    >>> model = cross_stitch(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks = task_names_of(task_names)
    args = conventions.resolve(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    model_inputs, features, views = features_of(inputs, tasks)
    if len(tasks) < 2:
        raise ValueError(f"cross_stitch needs two or more `task_names`; got {tasks}.")
    # From a FeatureSpec, column t reads task t's shared features (the stitches mix
    # columns across tasks, so a task table there would reach every task).
    columns = [views.task_shared[t] for t in tasks] if views is not None else [features] * len(tasks)
    for depth, width in enumerate(checks.units("units", units)):
        columns = [
            dense(width, f"{task}_column_{depth}", args, activation="relu")(x)
            for task, x in zip(tasks, columns)
        ]
        columns = CrossStitch(len(tasks), name=f"cross_stitch_{depth}")(columns)
    return build_model(
        model_inputs, tasks, columns, tower_units, task_types, "cross_stitch", auxiliary_tower_units, views,
        args,
    )
