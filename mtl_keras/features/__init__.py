"""Recommender features: raw ids and values to the tensors each part of a multi-task model reads.

``FeatureSpec([Numeric(...), Categorical(...), Sequence(...)], task_features=...)``;
``spec.adapt(data)`` learns vocabularies and statistics; every builder in
``mtl_keras.models`` accepts the spec as its ``inputs``. See ``spec.py`` for
what shared and task-specific parts read and ``tables.py`` for sharing.
"""

from mtl_keras.features.categorical import Categorical
from mtl_keras.features.inputs import prepare_arguments, prepare_inputs
from mtl_keras.features.layers import IdLookup, RawFeature, SequencePooling
from mtl_keras.features.numeric import Numeric
from mtl_keras.features.sequence import Sequence
from mtl_keras.features.spec import FeatureSpec, FeatureViews
from mtl_keras.features.tables import SHARING, EmbeddingTables

__all__ = [
    "Categorical",
    "EmbeddingTables",
    "FeatureSpec",
    "FeatureViews",
    "IdLookup",
    "Numeric",
    "RawFeature",
    "SHARING",
    "Sequence",
    "SequencePooling",
    "prepare_arguments",
    "prepare_inputs",
]
