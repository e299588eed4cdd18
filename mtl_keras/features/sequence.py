"""Sequence features: a variable-length list of ids per row (e.g. the items a user clicked)."""

from mtl_keras.features.categorical import IdColumn
from mtl_keras.features.layers import COMBINERS


class Sequence(IdColumn):
    """Variable-length id lists, embedded and pooled into one vector per row.

    Rows come padded (``[N, L]``, -1 pads int ids, "" pads strings) or ragged
    (lists of lists, ``tf.RaggedTensor``; padded on the way in). Only the
    first ``max_length`` ids of a row are read: longer rows are truncated,
    in training and in serving alike.

    Args:
        name: the feature's (and the model input's) name.
        embedding_of: read the ids with another feature's lookup and
            embedding tables (e.g. clicked items through "item_id"); the
            vocabulary, tables and sharing are then that feature's.
        max_length: ids kept per row.
        combiner: "mean", "sum" or "sqrtn" over the non-padding ids.
        vocabulary, num_buckets, embedding_dim, sharing, dtype,
        num_oov_buckets, max_vocabulary: as ``Categorical`` (without ``embedding_of``).

    Example:
    >>> clicks = Sequence("clicked_items", embedding_of="item_id", max_length=50)
    >>> clicks.combiner, clicks.max_length
    ('mean', 50)
    """

    kind = "sequence"

    def __init__(self, name, vocabulary=None, num_buckets=None, embedding_dim=8, sharing="shared",
                 dtype=None, num_oov_buckets=1, max_vocabulary=None, embedding_of=None, max_length=50,
                 combiner="mean"):
        super().__init__(name, vocabulary, num_buckets, embedding_dim, sharing, dtype, num_oov_buckets,
                         max_vocabulary)
        if int(max_length) < 1:
            raise ValueError(f"Feature {name!r}: `max_length` must be >= 1; got {max_length!r}.")
        if combiner not in COMBINERS:
            raise ValueError(f"Feature {name!r}: `combiner` must be one of {COMBINERS}; got {combiner!r}.")
        if embedding_of is not None and (vocabulary is not None or num_buckets is not None):
            raise ValueError(
                f"Feature {name!r}: with `embedding_of` the vocabulary is {embedding_of!r}'s; "
                "do not give `vocabulary` or `num_buckets`."
            )
        self.embedding_of = embedding_of
        self.max_length = int(max_length)
        self.combiner = combiner
