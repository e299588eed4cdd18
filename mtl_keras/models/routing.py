"""Builders that learn how tasks share: SNR routers and cross-stitch units."""

from mtl_keras.backend import keras
from mtl_keras.layers import CrossStitch, HardConcreteRouter
from mtl_keras.layers import checks
from mtl_keras.models.common import build_model, column_level, dense, prepare, task_columns
from mtl_keras.models.docstrings import shared_entries


@shared_entries
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
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        mode: "trans" (SNR-Trans: a learnt transform per edge) or "avg" (SNR-Avg).
        num_subnetworks: sub-networks per level.
        subnetwork_units: each level's sub-network width (one entry: every level).
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        l0_penalty: weight of the routers' expected-L0 penalty (>= 0).
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = snr(keras.Input(shape=(6,)), ["ctr", "cvr"], num_subnetworks=(2, 2), subnetwork_units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    )
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


@shared_entries
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
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        units: widths of the column layers, a cross-stitch unit after each.
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = cross_stitch(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, columns, views = task_columns(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer), "cross_stitch"
    )
    for depth, width in enumerate(checks.units("units", units)):
        columns = column_level(columns, tasks, width, depth, args, shared_representation=False)
        columns = CrossStitch(len(tasks), name=f"cross_stitch_{depth}")(columns)
    return build_model(
        model_inputs, tasks, columns, tower_units, task_types, "cross_stitch", auxiliary_tower_units, views,
        args,
    )
