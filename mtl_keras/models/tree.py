"""Learning to Branch: a searched tree of shared and task-specific layers."""

from mtl_keras.layers import BranchingLayers, SharedRepresentation
from mtl_keras.layers import checks
from mtl_keras.models.common import build_model, dense, prepare
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def learning_to_branch(
    inputs,
    task_names,
    units=(32, 16, 8),
    branches=None,
    tower_units=(8,),
    task_types="binary",
    temperature=5.0,
    temperature_decay=0.965,
    steps_per_epoch=100,
    parents=None,
    seed=0,
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """Learning to Branch (Guo et al., ICML 2020) on dense or recommender inputs.

    ``units[0]`` is the tree's root, a ReLU layer every task shares; the
    levels ``units[1:]`` form a ``BranchingLayers`` super-graph
    (``branches`` nodes per level, T by default) whose parent choices, and
    each task's choice of a last-level node, are searched with
    Gumbel-softmax. Train (searching) -> ``models.freeze_structure(model)``
    (the most likely tree) -> ``compile`` again and fine-tune or retrain ->
    export, each task's signature computing only its path. ``parents``
    (the flat list ``BranchingLayers`` documents) builds the fixed tree
    directly. Works with every weighting and projection; fast projections
    read the root's output.

    Args:
        {inputs}
        task_names: the tasks, in order (two or more); each names its head and output.
        units: the root's width, then each branched level's.
        branches: nodes per branched level (None: one per task).
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        temperature, temperature_decay, steps_per_epoch, parents, seed: the search, as
            ``mtl_keras.layers.BranchingLayers`` takes them.
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = learning_to_branch(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4, 3, 2))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer),
        "learning_to_branch",
    )
    units = checks.units("units", units)
    if len(units) < 2:
        raise ValueError(f"`units` must give the root and at least one branched level; got {units}.")
    root = dense(units[0], "root", args, activation="relu")(features)
    root = SharedRepresentation(name="shared_representation")(root)
    per_task = BranchingLayers(
        len(tasks), units[1:], branches=branches, temperature=temperature, temperature_decay=temperature_decay,
        steps_per_epoch=steps_per_epoch, parents=parents, seed=seed, name="branching", **args,
    )(root)
    return build_model(
        model_inputs, tasks, per_task, tower_units, task_types, "learning_to_branch", auxiliary_tower_units,
        views, args,
    )
