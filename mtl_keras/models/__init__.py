"""Builders of the standard multi-task architectures, each an uncompiled MultiTaskModel.

Every builder takes Keras inputs (one named tensor [B, D], or a dict of named
tensors that it concatenates) or a ``mtl_keras.features.FeatureSpec`` (raw
ids and values: shared parts read the shared embeddings of every feature,
each task's own parts and tower read its ``task_features`` and its own
tables), the task names, and ``task_types``: "binary"
(sigmoid head) or "regression" (linear head), one string for all tasks or a
dict by task. Heads are Dense layers named after their tasks. With
``auxiliary_tower_units`` (e.g. ``(4,)``) each task also gets a small
self-auxiliary tower on the same features and label (``mtl_keras.training.auxiliary``).
Every builder takes ``kernel_initializer``, ``bias_initializer``,
``kernel_regularizer`` and ``bias_regularizer`` (as ``keras.layers.Dense``) and
applies them to every layer with a kernel it creates, experts and gates
included (``mtl_keras.layers.conventions``).
"""

from mtl_keras.models.attention import mtan
from mtl_keras.models.bayesian import dbmtl
from mtl_keras.models.block_policy import adashare
from mtl_keras.models.conversion import esmm
from mtl_keras.models.domains import star
from mtl_keras.models.experts import mmoe, ple, shared_bottom
from mtl_keras.models.funnel import aitm
from mtl_keras.models.fusion import nddr
from mtl_keras.models.fusion_search import mtl_nas
from mtl_keras.models.personalized import pepnet
from mtl_keras.models.routing import cross_stitch, snr
from mtl_keras.models.structure import freeze_structure
from mtl_keras.models.tree import learning_to_branch

__all__ = ["adashare", "aitm", "cross_stitch", "dbmtl", "esmm", "freeze_structure", "learning_to_branch", "mmoe", "mtan", "mtl_nas", "nddr", "pepnet", "ple", "shared_bottom", "snr", "star"]
