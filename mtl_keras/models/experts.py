"""Builders whose tasks share a bottom or a set of experts: shared-bottom, MMoE/OMoE, PLE."""

from mtl_keras.backend import keras
from mtl_keras.layers import PLE, CGCLayer, ExpertGate, SharedRepresentation
from mtl_keras.layers import checks
from mtl_keras.models.common import build_model, dense, mlp, prepare
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def shared_bottom(
    inputs,
    task_names,
    bottom_units=(113,),
    tower_units=(8,),
    task_types="binary",
    auxiliary_tower_units=None,
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """Hard parameter sharing: one bottom MLP, one tower per task (Caruana, 1997).

    Args:
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        bottom_units: widths of the shared ReLU bottom MLP.
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> model = shared_bottom(keras.Input(shape=(6,)), ["ctr", "cvr"], bottom_units=(8,), tower_units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    )
    shared = mlp(features, checks.units("bottom_units", bottom_units), "bottom", args)
    shared = SharedRepresentation(name="shared_representation")(shared)
    return build_model(
        model_inputs, tasks, [shared] * len(tasks), tower_units, task_types, "shared_bottom",
        auxiliary_tower_units, views, args,
    )


@shared_entries
def mmoe(
    inputs,
    task_names,
    num_experts=8,
    expert_units=(16,),
    tower_units=(8,),
    task_types="binary",
    shared_gate=False,
    auxiliary_tower_units=None,
    gate="softmax",
    k=2,
    gate_temperature=1.0,
    entropy_penalty=1e-3,
    balance_penalty=0.0,
    balance_form="cv",
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """MMoE (Ma et al., KDD 2018); ``shared_gate=True`` gives OMoE, one gate for all tasks.

    From a ``FeatureSpec`` the experts read the shared features of every task,
    task t's gate the shared tables of task t's ``task_features`` (OMoE's one
    gate, the union), and each task's tower the mixture next to the task's own
    features. ``gate="dselect_k"`` (or ``"dselect_k_static"``) puts DSelect-k
    gates selecting ``k`` experts in place of the softmax gates
    (``mtl_keras.layers.DSelectKGate``); ``gate_temperature`` divides the gate logits;
    ``balance_penalty`` > 0 adds a load-balancing loss per gate (``balance_form``
    "cv" or "switch", ``mtl_keras.layers.balance``).

    Args:
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        num_experts: number of experts (>= 1).
        expert_units: hidden widths of every expert.
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        shared_gate: one gate for every task (OMoE) instead of one per task.
        {auxiliary_tower_units}
        {gates}
        {kernel_arguments}

    Example:
    >>> model = mmoe(keras.Input(shape=(6,)), ["ctr", "cvr"], num_experts=3, expert_units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    )
    gates, name = (1, "omoe") if shared_gate else (len(tasks), "mmoe")
    gate_inputs = None
    if views is not None and not shared_gate:
        gate_inputs = [views.task_shared[task] for task in tasks]
    mixed = ExpertGate(
        num_experts, expert_units, gates, name=name, gate=gate, k=k, gate_temperature=gate_temperature,
        entropy_penalty=entropy_penalty, balance_penalty=balance_penalty, balance_form=balance_form, **args,
    )(
        features, gate_inputs=gate_inputs
    )
    per_task = mixed * len(tasks) if shared_gate else mixed
    return build_model(
        model_inputs, tasks, per_task, tower_units, task_types, name, auxiliary_tower_units, views, args
    )


@shared_entries
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
    gate="softmax",
    k=2,
    gate_temperature=1.0,
    entropy_penalty=1e-3,
    balance_penalty=0.0,
    balance_form="cv",
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """PLE (Tang et al., RecSys 2020): ``num_levels`` CGC levels, then one tower per task.

    ``gate``, ``k``, ``gate_temperature``, ``entropy_penalty``, ``balance_penalty``,
    ``balance_form``: as in ``mmoe``, for every gate of every level.

    Args:
        {inputs}
        task_names: the tasks, in order; each names its head and output.
        num_levels: number of CGC levels (>= 1).
        num_task_experts, num_shared_experts: experts per task and shared experts
            of every level (>= 1).
        expert_units: hidden widths of every expert.
        tower_units: hidden widths of each task's ReLU tower.
        {task_types}
        {auxiliary_tower_units}
        {gates}
        {kernel_arguments}

    Example:
    >>> model = ple(keras.Input(shape=(6,)), ["ctr", "cvr"], num_levels=2, expert_units=(4,))
    >>> {task: tuple(p.shape) for task, p in model(np.ones((2, 6), "float32")).items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    )
    gating = dict(gate=gate, k=k, gate_temperature=gate_temperature, entropy_penalty=entropy_penalty,
                  balance_penalty=balance_penalty, balance_form=balance_form)
    if views is None:
        per_task = PLE(
            num_levels, len(tasks), num_task_experts, num_shared_experts, expert_units, name="ple",
            **args, **gating,
        )(features)
    else:
        # The PLE layer reads one tensor; its CGC levels take the task inputs apart.
        per_task = _cgc_inputs(views, tasks, args)
        levels = checks.positive_int("num_levels", num_levels)
        for level in range(levels):
            per_task = CGCLayer(
                len(tasks), num_task_experts, num_shared_experts, expert_units,
                is_last_level=level == levels - 1, name=f"cgc_{level}", **args, **gating,
            )(per_task)
    return build_model(
        model_inputs, tasks, per_task, tower_units, task_types, "ple", auxiliary_tower_units, views, args
    )


def _cgc_inputs(views, tasks, args):
    """PLE's first level from a FeatureSpec: task t's experts and gate read task t's shared
    features, the shared experts the union. Task tables stay out: below the last level the
    shared gate mixes every task's experts, so a task table there would reach other tasks.
    CGC wants one width for the task inputs; differing ones are projected to the union's."""
    task_inputs = [views.task_shared[task] for task in tasks]
    width = views.shared.shape[-1]
    if len({x.shape[-1] for x in task_inputs}) > 1:
        task_inputs = [
            x if x.shape[-1] == width else dense(width, f"{task}_expert_input", args)(x)
            for task, x in zip(tasks, task_inputs)
        ]
    return task_inputs + [views.shared]
