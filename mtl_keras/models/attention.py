"""MTAN: one shared trunk, per-task attention masks at every level."""

from mtl_keras.layers import MTANAttention, SharedRepresentation
from mtl_keras.layers import checks
from mtl_keras.models.common import build_model, dense, prepare
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def mtan(
    inputs,
    task_names,
    units=(64, 32),
    attention_units=None,
    tower_units=(8,),
    task_types="binary",
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """MTAN (Liu et al., CVPR 2019) in fully connected form.

    A shared trunk of ReLU Dense layers (``units``); after each, an
    ``MTANAttention`` level gives every task its attended feature (a sigmoid
    mask on the trunk output, computed from it and the task's previous
    attended feature); each task's tower reads its last attended feature.
    ``attention_units``: the hidden width of the attention modules (None:
    the level's width, as the paper); a bottleneck keeps the per-task cost
    below a column's.
    Works with every weighting and projection; fast projections read the
    first trunk layer's output, which every task reaches.

    Args:
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        units: widths of the shared trunk's ReLU Dense layers, one attention level
            after each.
        attention_units: hidden width of the attention modules (None: the level's).
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = mtan(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4, 3))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, trunk, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer), "mtan"
    )
    attended = []
    for depth, width in enumerate(checks.units("units", units)):
        trunk = dense(width, f"trunk_{depth}", args, activation="relu")(trunk)
        if depth == 0:
            trunk = SharedRepresentation(name="shared_representation")(trunk)
        attended = MTANAttention(
            len(tasks), attention_units=attention_units, name=f"attention_{depth}", **args
        )([trunk] + attended)
    return build_model(
        model_inputs, tasks, attended, tower_units, task_types, "mtan", auxiliary_tower_units, views, args
    )
