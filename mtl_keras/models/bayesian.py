"""DBMTL: task towers conditioned on the towers of the tasks before them."""

from mtl_keras.backend import keras
from mtl_keras.layers import ExpertGate, SharedRepresentation, checks
from mtl_keras.model import MultiTaskModel
from mtl_keras.models.common import head, mlp, prepare, task_types_of, tower_inputs
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def dbmtl(
    inputs,
    task_names,
    bottom_units=(64,),
    tower_units=(32,),
    relation_units=(16,),
    relations=None,
    num_experts=0,
    expert_units=(16,),
    task_types="binary",
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """DBMTL: task heads conditioned on the earlier tasks' representations, as EasyRec ships it.

    Wang et al., "Deep Bayesian Multi-Target Learning for Recommender Systems",
    arXiv 1902.09154, 2019.

    The joint probability is factored along the task order, P(y_1, ..., y_T | x) =
    prod_t P(y_t | y_<t, x): a shared bottom (an MLP of ``bottom_units``, or with
    ``num_experts`` > 0 an MMoE whose mixture t feeds task t) feeds each task's
    tower (``tower_units``); task t's relation MLP (``relation_units``) reads its
    tower next to the relation outputs of the tasks it depends on, and its head
    reads the relation output. A later task's head therefore sees the earlier
    tasks' representations; an earlier task's never sees a later one's.

    Args:
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        bottom_units: widths of the shared ReLU bottom MLP (without experts).
        tower_units: hidden widths of each task's ReLU tower.
        relation_units: widths of each task's relation MLP.
        relations: {task: [tasks it depends on]}; every dependency comes earlier
            in ``task_names``. Default: each task depends on all before it.
        num_experts, expert_units: the MMoE bottom (0 = the MLP bottom).
        {task_types}
        {kernel_arguments}

    Example:
    >>> model = dbmtl(keras.Input(shape=(6,)), ["ctr", "cvr"], bottom_units=(8,), tower_units=(4,),
    ...               relation_units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    )
    types = task_types_of(task_types, tasks)
    depends = _relations(relations, tasks)
    if num_experts:
        bottoms = ExpertGate(checks.positive_int("num_experts", num_experts), expert_units, len(tasks),
                             name="mmoe", **args)(features)
    else:
        shared = mlp(features, checks.units("bottom_units", bottom_units), "bottom", args)
        bottoms = [SharedRepresentation(name="shared_representation")(shared)] * len(tasks)
    towers = {
        task: mlp(x, checks.units("tower_units", tower_units), f"{task}_tower", args)
        for task, x in zip(tasks, tower_inputs(views, tasks, bottoms))
    }
    relation_units = checks.units("relation_units", relation_units)
    related, outputs = {}, {}
    for task in tasks:
        parts = [towers[task]] + [related[dep] for dep in depends[task]]
        joined = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name=f"{task}_relation_input")(parts)
        related[task] = mlp(joined, relation_units, f"{task}_relation", args)
        outputs[task] = head(related[task], (), task, types[task], args)
    return MultiTaskModel(model_inputs, outputs, name="dbmtl")


def _relations(relations, tasks):
    if relations is None:
        return {task: tasks[:index] for index, task in enumerate(tasks)}
    if not isinstance(relations, dict) or set(relations) - set(tasks):
        raise ValueError(f"`relations` must be a dict {{task: [earlier tasks]}} over {tasks}; got {relations!r}.")
    depends = {}
    for index, task in enumerate(tasks):
        deps = list(relations.get(task, []))
        if any(dep not in tasks[:index] for dep in deps):
            raise ValueError(
                f"`relations[{task!r}]` must name tasks before {task!r} in `task_names` "
                f"({tasks[:index]}); got {deps}."
            )
        depends[task] = deps
    return depends
