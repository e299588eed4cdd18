"""PEPNet: embeddings and towers personalised by gates on prior features."""

from mtl_keras.backend import keras
from mtl_keras.features import FeatureSpec
from mtl_keras.layers import EPNet, PPNet, checks
from mtl_keras.model import MultiTaskModel
from mtl_keras.models.common import head, prepare, task_types_of
from mtl_keras.models.docstrings import shared_entries


@shared_entries
def pepnet(
    inputs,
    prior_inputs,
    task_names,
    tower_units=(64, 32),
    gate_hidden_units=None,
    gate_scale=2.0,
    prior_embedding_dim=8,
    task_types="binary",
    kernel_initializer="glorot_uniform",
    bias_initializer="zeros",
    kernel_regularizer=None,
    bias_regularizer=None,
):
    """PEPNet (Chang et al., KDD 2023): EPNet on the features, then PPNet towers.

    ``O_ep = EPNet([E, prior])`` scales the features E by a gate on the prior
    features (and E under stop-gradient); ``PPNet`` gives each task a tower of
    ``tower_units`` whose every layer's input is scaled by a gate on the prior
    features and O_ep (stop-gradient); each tower ends in a head named after
    its task.

    Args:
        inputs: Keras inputs (a tensor [B, D] or a dict of them) or a ``FeatureSpec``.
        prior_inputs: the personalised prior features (user, item, domain ids...):
            with Keras inputs, a Keras input or a non-empty dict of them (added to
            the model's inputs); with a FeatureSpec, a non-empty list of names of
            its Categorical features, each embedded (``prior_embedding_dim``) for
            the gates from the lookup rows the spec computes.
        task_names: the tasks, in order; each names its head and output.
        tower_units: hidden widths of each task's ReLU tower.
        gate_hidden_units, gate_scale: every GateNU's hidden width and gamma.
        prior_embedding_dim: width of each prior feature's embedding (FeatureSpec only).
        {task_types}
        {kernel_arguments}

    Example:
    >>> prior = keras.Input(shape=(2,), name="user")
    >>> model = pepnet(keras.Input(shape=(6,), name="x"), prior, ["ctr", "cvr"], tower_units=(4,))
    >>> out = model({"x": np.ones((2, 6), "float32"), "user": np.ones((2, 2), "float32")})
    >>> {task: tuple(p.shape) for task, p in out.items()}
    {'ctr': (2, 1), 'cvr': (2, 1)}
    """
    tasks, args, model_inputs, features, views = prepare(
        inputs, task_names, (kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer)
    )
    types = task_types_of(task_types, tasks)
    if isinstance(inputs, FeatureSpec):
        prior = _spec_prior(views, prior_inputs, prior_embedding_dim)
    else:
        model_inputs, prior = _keras_prior(model_inputs, prior_inputs)
    gating = dict(hidden_units=gate_hidden_units, scale=gate_scale)
    personalised = EPNet(name="epnet", **gating, **args)([features, prior])
    towers = PPNet(len(tasks), checks.units("tower_units", tower_units), name="ppnet", **gating, **args)(
        [personalised, prior]
    )
    outputs = {task: head(tower, (), task, types[task], args) for task, tower in zip(tasks, towers)}
    return MultiTaskModel(model_inputs, outputs, name="pepnet")


def _keras_prior(model_inputs, prior_inputs):
    named = prior_inputs if isinstance(prior_inputs, dict) else (
        {prior_inputs.name: prior_inputs} if prior_inputs is not None and hasattr(prior_inputs, "shape") else {}
    )
    if not named or any(len(t.shape) != 2 for t in named.values()):
        raise ValueError(
            "`prior_inputs` must be a Keras input [B, D_p] or a non-empty dict of them (the prior "
            f"features the gates read); got {prior_inputs!r}."
        )
    main = model_inputs if isinstance(model_inputs, dict) else {model_inputs.name: model_inputs}
    tensors = list(named.values())
    prior = tensors[0] if len(tensors) == 1 else keras.layers.Concatenate(name="prior_features")(tensors)
    return dict(main, **named), prior


def _spec_prior(views, names, dim):
    if isinstance(names, str) or not names or any(n not in views.indices for n in names):
        raise ValueError(
            "With a FeatureSpec, `prior_inputs` must be a non-empty list of Categorical features the "
            f"tasks read; got {names!r}, expected names from {sorted(views.indices)}."
        )
    embedded = [
        keras.layers.Flatten(name=f"{n}_prior_flat")(
            keras.layers.Embedding(views.sizes[n], dim, name=f"{n}_prior_embedding")(views.indices[n])
        )
        for n in names
    ]
    return embedded[0] if len(embedded) == 1 else keras.layers.Concatenate(name="prior_features")(embedded)
