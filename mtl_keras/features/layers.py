"""The Keras layers a FeatureSpec puts into a model: raw-input checks, id lookups, sequence pooling.

They wrap Keras' own preprocessing layers (``StringLookup``, ``IntegerLookup``,
``Hashing``); vocabularies live in the layers' configs, so a ``.keras`` file
(either Keras) revives them without ``custom_objects`` and with the same ids.
"""

import numpy as np

from mtl_keras.backend import keras, register, tf

# Padding of id sequences: -1 for integer ids, "" for strings. Ids are >= 0, so -1 is never an id.
INT_PAD = -1
STRING_PAD = ""
KINDS = ("numeric", "categorical", "sequence")


def pad_value(value_dtype):
    return STRING_PAD if value_dtype == "string" else INT_PAD


@register
class RawFeature(keras.layers.Layer):
    """One raw input as the model reads it: cast, shaped, sequences truncated.

    Numeric features become float32 ``[B, width]``; ids become int64 (or stay
    strings) ``[B]``; sequences become ``[B, min(L, max_length)]``. The layer
    also tells ``mtl_keras.features.inputs`` what each input expects.

    Args:
        feature: the feature's name (the model input's name).
        kind: "numeric", "categorical" or "sequence".
        value_dtype: "float32", "int64" or "string".
        width: numeric features: values per row.
        max_length: sequences: ids kept per row (the first ``max_length``).
        default: numeric features: the ``width`` values a missing value (NaN)
            becomes; None keeps NaN.

    Input shape: ``[B]`` (or ``[B, width]`` numeric), sequences ``[B, L]``.

    Example:
    >>> layer = RawFeature("clicks", "sequence", "int64", max_length=2)
    >>> layer(tf.constant([[3, 4, 5]])).numpy().tolist()
    [[3, 4]]
    """

    def __init__(self, feature, kind, value_dtype, width=1, max_length=None, default=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"`kind` must be one of {KINDS}; got {kind!r}.")
        self.feature, self.kind, self.value_dtype = feature, kind, value_dtype
        self.width, self.max_length = int(width), max_length
        self.default = None if default is None else [float(v) for v in np.broadcast_to(default, [self.width])]
        # XLA has no string kernels; the model's jit_compile="auto" reads this flag (both Kerases).
        self.supports_jit = value_dtype != "string"

    def call(self, inputs):
        x = tf.convert_to_tensor(inputs)
        if self.kind == "numeric":
            x = tf.reshape(tf.cast(x, tf.float32), [-1, self.width])
            if self.default is None:
                return x
            return tf.where(tf.math.is_nan(x), tf.constant([self.default], tf.float32), x)
        if self.value_dtype != "string":
            x = tf.cast(x, tf.int64)
        if self.kind == "sequence":
            return x[:, : self.max_length]
        return tf.reshape(x, [-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            feature=self.feature, kind=self.kind, value_dtype=self.value_dtype,
            width=self.width, max_length=self.max_length, default=self.default,
        )
        return config


@register
class IdLookup(keras.layers.Layer):
    """Raw ids (strings or int64) to row indices of an embedding table.

    With ``num_buckets`` the ids are hashed (``keras.layers.Hashing``) into
    ``num_buckets`` rows; else a ``StringLookup`` / ``IntegerLookup`` over
    ``vocabulary`` gives rows ``num_oov_buckets + i`` and sends ids it has
    never seen (negative ids included) to the OOV rows ``[0, num_oov_buckets)``,
    never an error, which is what a server needs.

    Args:
        value_dtype: "string" or "int64".
        vocabulary: the known ids (no padding value, no negatives).
        num_buckets: hash into this many rows instead of a vocabulary.
        num_oov_buckets: rows for unknown ids (vocabulary only).

    Input: ids of any shape. Output: int64 indices of the same shape.

    Example:
    >>> lookup = IdLookup("string", vocabulary=["ios", "android"])
    >>> lookup(tf.constant(["android", "web"])).numpy().tolist()
    [2, 0]
    """

    def __init__(self, value_dtype, vocabulary=None, num_buckets=None, num_oov_buckets=1, **kwargs):
        super().__init__(**kwargs)
        if (vocabulary is None) == (num_buckets is None):
            raise ValueError("IdLookup needs exactly one of `vocabulary` and `num_buckets`.")
        self.value_dtype = value_dtype
        # Hash tables and string hashing have no XLA kernels; jit_compile="auto" reads this flag.
        self.supports_jit = False
        self.num_buckets = None if num_buckets is None else int(num_buckets)
        self.num_oov_buckets = int(num_oov_buckets)
        if num_buckets is not None:
            self.vocabulary = None
            self.lookup = keras.layers.Hashing(self.num_buckets, name="hashing")
        elif value_dtype == "string":
            self.vocabulary = [str(v) for v in vocabulary]
            self.lookup = keras.layers.StringLookup(
                vocabulary=self.vocabulary, num_oov_indices=self.num_oov_buckets, name="lookup"
            )
        else:
            self.vocabulary = [int(v) for v in vocabulary]
            self.lookup = keras.layers.IntegerLookup(
                vocabulary=list(self.vocabulary),  # a list: tf_keras' save_assets tests its truth
                num_oov_indices=self.num_oov_buckets,
                vocabulary_dtype="int64",
                name="lookup",
            )

    def build(self, inputs_shape):
        # The lookup holds no weights (its table comes from the vocabulary); build it here all the same.
        if not self.lookup.built:
            self.lookup.build(inputs_shape)
        super().build(inputs_shape)

    @property
    def size(self):
        """Rows of the table the indices address."""
        return self.num_buckets or len(self.vocabulary) + self.num_oov_buckets

    def call(self, inputs):
        return tf.cast(self.lookup(inputs), tf.int64)

    def get_config(self):
        config = super().get_config()
        config.update(
            value_dtype=self.value_dtype, vocabulary=self.vocabulary,
            num_buckets=self.num_buckets, num_oov_buckets=self.num_oov_buckets,
        )
        return config


COMBINERS = ("mean", "sum", "sqrtn")


@register
class SequencePooling(keras.layers.Layer):
    """Pools the embeddings of an id sequence over its non-padding positions.

    ``call([embedded, raw_ids])``: embedded ``[B, L, D]``, raw_ids ``[B, L]``
    (padding: -1 for int ids, "" for strings) -> ``[B, D]``. "sum" adds the
    valid rows, "mean" divides by their count n, "sqrtn" by sqrt(n); an empty
    row pools to zeros.

    Args:
        combiner: "mean", "sum" or "sqrtn".
        value_dtype: the raw ids' dtype, "string" or "int64" (sets the padding).

    Example:
    >>> pool = SequencePooling("mean", "int64")
    >>> pool([tf.ones([1, 3, 2]), tf.constant([[7, 8, -1]], tf.int64)]).numpy().tolist()
    [[1.0, 1.0]]
    """

    def __init__(self, combiner="mean", value_dtype="int64", **kwargs):
        super().__init__(**kwargs)
        if combiner not in COMBINERS:
            raise ValueError(f"`combiner` must be one of {COMBINERS}; got {combiner!r}.")
        self.combiner, self.value_dtype = combiner, value_dtype

    def call(self, inputs):
        embedded, raw_ids = inputs
        valid = tf.cast(tf.not_equal(raw_ids, pad_value(self.value_dtype)), embedded.dtype)
        total = tf.reduce_sum(embedded * valid[:, :, None], axis=1)
        count = tf.reduce_sum(valid, axis=1, keepdims=True)
        if self.combiner == "mean":
            return tf.math.divide_no_nan(total, count)
        if self.combiner == "sqrtn":
            return tf.math.divide_no_nan(total, tf.sqrt(count))
        return total

    def compute_output_shape(self, input_shape):
        embedded_shape = tf.TensorShape(input_shape[0])
        return tf.TensorShape([embedded_shape[0], embedded_shape[-1]])

    def get_config(self):
        config = super().get_config()
        config.update(combiner=self.combiner, value_dtype=self.value_dtype)
        return config
