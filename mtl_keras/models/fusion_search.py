"""MTL-NAS: task columns with searched NDDR-style fusion edges between them."""

from mtl_keras.layers import SearchedFusion
from mtl_keras.layers import checks
from mtl_keras.layers.mtl_nas import PHASES
from mtl_keras.models.common import build_model, column_level, task_columns
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def mtl_nas(
    inputs,
    task_names,
    units=(32, 16),
    tower_units=(8,),
    task_types="binary",
    phase="search",
    edges=None,
    entropy_weight=0.1,
    batch_norm=True,
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """MTL-NAS (Gao et al., CVPR 2020) on dense or recommender inputs.

    One column of ReLU Dense layers (``units``) per task; after level j a
    ``SearchedFusion`` fuses each column with edges from the other columns'
    levels 0..j, NDDR-style. ``phase="search"``: every candidate edge with a
    learnt weight sigmoid(beta) and the minimum-entropy regulariser, trained
    single-shot with the network. Then either ``models.freeze_structure(model)``
    (keep edges with weight > 0.5 in place and fine-tune) or, as the paper,
    retrain the found architecture: ``mtl_nas(..., phase="fixed",
    edges=models.freeze_structure(search_model))`` (a dict by fusion layer
    name; only the kept edges get kernels). Works with every weighting and
    projection; fast projections read the first column layers' outputs.

    Args:
        {inputs}
        task_names: the tasks, in order (two or more); each names its column, head
            and output.
        units: widths of the column layers, a searched fusion after each.
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        phase: "search" (every candidate edge, weighted) or "fixed" (``edges`` only).
        edges: with phase="fixed", the kept edges by fusion layer name (what
            ``models.freeze_structure`` returns for the search model).
        entropy_weight: weight of the minimum-entropy regulariser on the edge weights.
        batch_norm: batch norm in every fusion (as NDDR's paper; on dense inputs False trains
            better: docs/benchmarks.md, census and recsys tables).
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> from mtl_keras.models import freeze_structure
    >>> search = mtl_nas(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4, 3))
    >>> edges = freeze_structure(search)
    >>> fixed = mtl_nas(keras.Input(shape=(6,)), ["ctr", "cvr"], units=(4, 3), phase="fixed", edges=edges)
    >>> {task: tuple(p.shape) for task, p in fixed(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    if phase not in PHASES:
        raise ValueError(f"`phase` must be one of {PHASES}; got {phase!r}.")
    units = checks.units("units", units)
    names = [f"fusion_{depth}" for depth in range(len(units))]
    if phase == "fixed" and (not isinstance(edges, dict) or set(edges) != set(names)):
        raise ValueError(
            f"`edges` must be a dict with the kept edges of each fusion layer {names} with phase='fixed' "
            f"(what models.freeze_structure returns for the search model); got {edges!r}."
        )
    tasks, args, model_inputs, columns, views = task_columns(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer), "mtl_nas"
    )
    history = []
    for depth, width in enumerate(units):
        columns = column_level(columns, tasks, width, depth, args)
        history += columns
        columns = SearchedFusion(
            len(tasks), depth, phase=phase, edges=None if edges is None else edges[names[depth]],
            entropy_weight=entropy_weight, batch_norm=batch_norm, kernel_regularizer=args["kernel_regularizer"],
            bias_regularizer=args["bias_regularizer"], name=names[depth],
        )(history)
    return build_model(
        model_inputs, tasks, columns, tower_units, task_types, f"mtl_nas_{phase}", auxiliary_tower_units, views,
        args,
    )
