"""Categorical features: one id per row (string or int), looked up and embedded."""

import collections

import numpy as np

from mtl_keras.features.inputs import column_array, infer_id_dtype
from mtl_keras.features.layers import RawFeature, IdLookup, pad_value
from mtl_keras.features.tables import SHARING

ID_DTYPES = ("string", "int64")


class IdColumn:
    """What Categorical and Sequence share: ids, their vocabulary or hash buckets, the embedding."""

    kind = None
    max_length = None
    width = 1

    def __init__(self, name, vocabulary=None, num_buckets=None, embedding_dim=8, sharing="shared",
                 dtype=None, num_oov_buckets=1, max_vocabulary=None):
        self.name = name
        if vocabulary is not None and num_buckets is not None:
            raise ValueError(f"Feature {name!r}: give `vocabulary` or `num_buckets`, not both.")
        if num_buckets is not None and int(num_buckets) < 1:
            raise ValueError(f"Feature {name!r}: `num_buckets` must be >= 1; got {num_buckets!r}.")
        if sharing not in SHARING:
            raise ValueError(f"Feature {name!r}: `sharing` must be one of {SHARING}; got {sharing!r}.")
        if dtype is not None and dtype not in ID_DTYPES:
            raise ValueError(f"Feature {name!r}: `dtype` must be one of {ID_DTYPES}; got {dtype!r}.")
        self.num_buckets = None if num_buckets is None else int(num_buckets)
        self.embedding_dim = int(embedding_dim)
        self.sharing = sharing
        self.num_oov_buckets = int(num_oov_buckets)
        self.max_vocabulary = max_vocabulary
        self.value_dtype = dtype
        self.vocabulary = None
        if vocabulary is not None:
            vocabulary = list(vocabulary)
            if not vocabulary:
                raise ValueError(f"Feature {name!r}: `vocabulary` must not be empty.")
            self.value_dtype = self.value_dtype or infer_id_dtype(name, np.asarray(vocabulary))
            self.vocabulary = self._checked(vocabulary).tolist()
            self._given_vocabulary = True
        else:
            self._given_vocabulary = False

    @property
    def value_dtype_or_raise(self):
        if self.value_dtype is None:
            raise ValueError(
                f"Feature {self.name!r}: the id dtype is unknown; pass dtype='string' or 'int64', "
                "or call `FeatureSpec.adapt`."
            )
        return self.value_dtype

    def _checked(self, values):
        return column_array(self.name, self.kind, self.value_dtype, values, max_length=self.max_length)

    def ids_of(self, values):
        """The ids in ``values`` (padding dropped), checked against the feature's dtype."""
        if self.value_dtype is None:
            self.value_dtype = infer_id_dtype(self.name, values)
        ids = self._checked(values).ravel()
        return ids[ids != pad_value(self.value_dtype)]

    def learn_vocabulary(self, ids):
        """Sets the vocabulary from ids (most frequent first) unless it was given or ids are hashed."""
        if not len(ids):
            raise ValueError(f"Feature {self.name!r}: `adapt` needs at least one id; got none.")
        if self._given_vocabulary or self.num_buckets is not None:
            return
        counts = collections.Counter(ids.tolist())
        ordered = sorted(counts, key=lambda v: (-counts[v], v))
        self.vocabulary = ordered[: self.max_vocabulary] if self.max_vocabulary else ordered

    def input_shape(self):
        return (None,) if self.kind == "sequence" else ()

    def raw(self):
        return RawFeature(
            self.name, self.kind, self.value_dtype_or_raise, max_length=self.max_length,
            name=f"{self.name}_raw",
        )

    def lookup(self):
        """A new IdLookup layer for this feature's ids."""
        if self.vocabulary is None and self.num_buckets is None:
            raise ValueError(
                f"Feature {self.name!r} has no vocabulary: give `vocabulary` or `num_buckets`, "
                "or call `FeatureSpec.adapt`."
            )
        return IdLookup(
            self.value_dtype_or_raise, vocabulary=self.vocabulary, num_buckets=self.num_buckets,
            num_oov_buckets=self.num_oov_buckets, name=f"{self.name}_lookup",
        )


class Categorical(IdColumn):
    """One id per row: a user, an item, a device.

    Args:
        name: the feature's (and the model input's) name.
        vocabulary: the known ids; None = learnt by ``FeatureSpec.adapt``
            (most frequent first, at most ``max_vocabulary``).
        num_buckets: hash ids into this many rows instead (no vocabulary).
        embedding_dim: width of the embedding.
        sharing: "shared" (one table every task reads), "task" (one table per
            task), "both" (the shared table plus one per task).
        dtype: "string" or "int64"; None = from the vocabulary or adapt data.
        num_oov_buckets: rows for ids outside the vocabulary.
        max_vocabulary: the most ids ``adapt`` learns (None: every one).

    Unknown ids at serving time go to an OOV row. Ids are never negative:
    -1 (and "" for strings) means missing, the OOV row too; a pandas column's
    missing values become those (``features.frames``).

    Example:
    >>> device = Categorical("device", vocabulary=["ios", "android"], embedding_dim=4)
    >>> device.value_dtype, device.lookup().size
    ('string', 3)
    """

    kind = "categorical"
