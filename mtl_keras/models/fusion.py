"""NDDR: task columns fused at every level by learnt per-task reductions."""

from mtl_keras.layers import NDDR, SharedRepresentation
from mtl_keras.layers import checks, conventions
from mtl_keras.models.common import build_model, dense, features_of, task_names_of


def task_columns(inputs, task_names, name):
    """(model inputs, task list, the level-0 input of each column, FeatureViews or None).

    From a FeatureSpec column t reads task t's shared features (fusion mixes
    columns across tasks, so a task table there would reach every task)."""
    tasks = task_names_of(task_names)
    if len(tasks) < 2:
        raise ValueError(f"{name} needs two or more `task_names`; got {tasks}.")
    model_inputs, features, views = features_of(inputs, tasks)
    columns = [views.task_shared[t] for t in tasks] if views is not None else [features] * len(tasks)
    return model_inputs, tasks, columns, views


def column_level(columns, tasks, width, depth, kernel_args):
    """One Dense layer per column; level 0's outputs are marked as the shared representation
    (every task reads every column after the first fusion), so fast projections work."""
    columns = [
        dense(width, f"{task}_column_{depth}", kernel_args, activation="relu")(x)
        for task, x in zip(tasks, columns)
    ]
    if depth == 0:
        columns = [SharedRepresentation(name=f"{task}_representation")(x) for task, x in zip(tasks, columns)]
    return columns


def nddr(
    inputs,
    task_names,
    units=(64, 32),
    tower_units=(8,),
    task_types="binary",
    diagonal=0.9,
    off_diagonal=None,
    batch_norm=True,
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """NDDR network (Gao et al., CVPR 2019): task columns fused by ``NDDR`` layers.

    One column per task, an ``NDDR`` fusion after each of its layers, then the
    towers.

    Each column layer is a ReLU Dense of ``units[k]``; the NDDR layer that
    follows concatenates the T columns and reduces them back to ``units[k]``
    per task (1x1 convolution, batch norm, ReLU), initialised to
    ``diagonal * I`` on the task's own block and ``off_diagonal * I``
    elsewhere. Works with every weighting and projection; fast projections
    read the first column layers' outputs. The kernel arguments reach every
    column, tower and head, and the regularizers the NDDR kernels (which keep
    the paper's initialisation).

    Args:
        inputs: Keras inputs (a tensor [B, D] or a dict of them, concatenated) or a
            ``FeatureSpec``.
        task_names: the tasks, in order (two or more); each names its column, head
            and output.
        units: widths of the column layers, an NDDR fusion after each.
        tower_units: hidden widths of each task's ReLU tower.
        task_types: "binary" (sigmoid head) or "regression" (linear head); one
            string for every task or a dict by task.
        diagonal, off_diagonal: the NDDR kernels' initial weights on a task's own
            block and elsewhere (None: (1 - diagonal) / (T - 1)).
        batch_norm: batch norm in every NDDR layer.
        auxiliary_tower_units: widths of a self-auxiliary tower per task (Wang et
            al., 2022), trained and dropped at export; None: none.
        kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            as ``keras.layers.Dense`` takes them, for every layer with a kernel the
            model creates (``mtl_keras.layers.conventions``).

    Example:
    >>> model = nddr(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    args = conventions.resolve(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    model_inputs, tasks, columns, views = task_columns(inputs, task_names, "nddr")
    for depth, width in enumerate(checks.units("units", units)):
        columns = column_level(columns, tasks, width, depth, args)
        columns = NDDR(
            len(tasks), diagonal=diagonal, off_diagonal=off_diagonal, batch_norm=batch_norm,
            kernel_regularizer=args["kernel_regularizer"], bias_regularizer=args["bias_regularizer"],
            name=f"nddr_{depth}",
        )(columns)
    return build_model(
        model_inputs, tasks, columns, tower_units, task_types, "nddr", auxiliary_tower_units, views, args
    )
