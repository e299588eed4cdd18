"""NDDR: task columns fused at every level by learnt per-task reductions."""

from mtl_keras.layers import NDDR
from mtl_keras.layers import checks
from mtl_keras.models.common import build_model, column_level, task_columns
from mtl_keras.models.docstrings import shared_entries


@shared_entries
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
        {inputs}
        task_names: the tasks, in order (two or more); each names its column, head
            and output.
        units: widths of the column layers, an NDDR fusion after each.
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        diagonal, off_diagonal: the NDDR kernels' initial weights on a task's own
            block and elsewhere (None: (1 - diagonal) / (T - 1)).
        batch_norm: batch norm in every NDDR layer (the paper's, for convolutional maps; on
            dense inputs False trains better: docs/benchmarks.md, census and recsys tables).
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = nddr(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, columns, views = task_columns(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer), "nddr"
    )
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
