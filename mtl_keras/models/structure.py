"""Freezing the structures that AdaShare, Learning to Branch and MTL-NAS search."""

from mtl_keras.backend import all_layers
from mtl_keras.layers.gumbel import LearntStructure


def freeze_structure(model):
    """Fixes the most likely structure of every searching layer of ``model``.

    After the search phase: each ``AdaShareBlocks`` keeps its most likely
    policy, each branching layer its most likely parents, each MTL-NAS
    fusion its chosen edges. The frozen layers compute only what their
    structure uses (training and inference), their config holds it (a
    ``.keras`` file reloads frozen), and the model can be exported, each
    signature computing only its part. ``compile`` the model again before
    training it further: the train step and the variables the tasks share
    change with the structure.

    Args:
        model: a model holding searching layers (``LearntStructure``).

    Returns:
        {layer name: the frozen structure (nested lists of ints)}.

    Example:
    >>> from mtl_keras import models
    >>> model = models.adashare(keras.Input(shape=(6,)), ["ctr", "cvr"], units=4, num_blocks=2)
    >>> freeze_structure(model)
    {'adashare': [[1, 1], [1, 1]]}
    """
    return {
        layer.name: layer.freeze()
        for layer in all_layers(model)
        if isinstance(layer, LearntStructure) and not layer.frozen
    }
