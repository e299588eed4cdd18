"""STAR: one model for several domains, with per-domain normalisation and weights."""

from mtl_keras.backend import keras
from mtl_keras.layers import PartitionedNorm, SharedRepresentation, StarDense
from mtl_keras.layers import checks, conventions
from mtl_keras.model import MultiTaskModel
from mtl_keras.models.common import (
    HEAD_ACTIVATION, dense, features_of, head, mlp, task_names_of, task_types_of,
)
from mtl_keras.models.docstrings import shared_entries


@shared_entries
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
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """STAR (Sheng et al., CIKM 2021) for several domains and tasks.

    Features -> ``PartitionedNorm`` -> star-topology ``StarDense`` layers of
    ``units``; each task's logit is a domain-specific ``StarDense(1)`` plus the
    paper's auxiliary network (domain embedding concatenated with the
    features, a 2-layer MLP of ``auxiliary_units``, one logit), and the head
    is sigmoid (binary) or identity (regression) of their sum.
    From a FeatureSpec, the star layers read the shared features and each
    task's auxiliary network reads its task's own features next to the
    domain embedding.

    Args:
        {inputs}
        domain_ids: a Keras integer input [B] or [B, 1] (part of the model's
            inputs); with a ``FeatureSpec``, the name of one of its
            Categorical features (e.g. "device"), whose lookup rows are the
            domains (the OOV row included).
        num_domains: number of domains P (default with a FeatureSpec: the
            feature's lookup rows).
        task_names: the tasks, in order; each names its head and output.
        units: widths of the star-topology ``StarDense`` layers.
        {task_types}
        auxiliary_units: widths of the auxiliary network's MLP.
        domain_embedding_dim: width of the domain embedding the auxiliary network reads.
        {auxiliary_tower_units}
        {kernel_arguments}

    Example:
    >>> domain = keras.Input(shape=(), dtype="int32", name="domain")
    >>> model = star(keras.Input(shape=(6,), name="x"), domain, ["ctr", "cvr"], units=(8,), num_domains=3,
    ...              auxiliary_units=(4,))
    >>> predictions = model({"x": np.ones((2, 6), "float32"), "domain": np.array([0, 2])})
    >>> {task: tuple(p.shape) for task, p in predictions.items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks = task_names_of(task_names)
    args = conventions.resolve(kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    model_inputs, features, views = features_of(inputs, tasks)
    types = task_types_of(task_types, tasks)
    if views is not None:
        domain_ids, num_domains = _spec_domains(views, domain_ids, num_domains)
    else:
        named = model_inputs if isinstance(model_inputs, dict) else {model_inputs.name: model_inputs}
        model_inputs = dict(named, **{domain_ids.name: domain_ids})
    domains = checks.positive_int("num_domains", num_domains)
    hidden = PartitionedNorm(domains, name="partitioned_norm")(features, domain_ids)
    for depth, width in enumerate(checks.units("units", units)):
        hidden = StarDense(width, domains, activation="relu", name=f"star_{depth}", **args)(hidden, domain_ids)
    hidden = SharedRepresentation(name="shared_representation")(hidden)
    domain = keras.layers.Flatten(name="domain_flat")(
        keras.layers.Embedding(domains, domain_embedding_dim, name="domain_embedding")(domain_ids)
    )
    if views is None:
        auxiliary_input = keras.layers.Concatenate(name="auxiliary_input")([features, domain])
    outputs = {}
    for task in tasks:
        if views is not None:
            auxiliary_input = keras.layers.Concatenate(name=f"{task}_auxiliary_input")(
                [views.task[task], domain]
            )
        main = StarDense(1, domains, name=f"{task}_star_logit", **args)(hidden, domain_ids)
        side = mlp(
            auxiliary_input, checks.units("auxiliary_units", auxiliary_units), f"{task}_auxiliary_net", args
        )
        side = dense(1, f"{task}_auxiliary_logit", args)(side)
        logit = keras.layers.Add(name=f"{task}_logit")([main, side])
        outputs[task] = keras.layers.Activation(HEAD_ACTIVATION[types[task]] or "linear", name=task)(logit)
    auxiliary_outputs = None
    if auxiliary_tower_units is not None:
        aux_units = checks.units("auxiliary_tower_units", auxiliary_tower_units)
        auxiliary_outputs = {t: head(hidden, aux_units, f"{t}_aux", types[t], args) for t in tasks}
    return MultiTaskModel(model_inputs, outputs, name="star", auxiliary_outputs=auxiliary_outputs)


def _spec_domains(views, name, num_domains):
    """(domain ids, P) from a FeatureSpec's categorical feature ``name``."""
    if not isinstance(name, str) or name not in views.indices:
        raise ValueError(
            "With a FeatureSpec, `domain_ids` must name a Categorical feature some task reads; "
            f"got {name!r}, expected one of {sorted(views.indices)}."
        )
    return views.indices[name], num_domains or views.sizes[name]
