"""A recommender's SavedModel for ``mtl_keras.serving`` (and TF Serving).

``export_recommender(base_path, features, ranking=..., query=..., candidates=...)``
writes ``base_path/<version>/`` with, as present:

- one signature per ranking task, named after it, returning that head, and
  ``serving_default`` returning every head (as ``mtl_keras.export`` does for a
  ``MultiTaskModel``);
- ``query_embedding``: the retrieval tower's query embedding
  (output ``query_embedding`` [B, D]);
- ``top_k``: the k best candidates of each query by dot product over a fixed
  candidate set (outputs ``scores`` [B, k] and ``ids`` [B, k]), by
  ``tfrs.layers.factorized_top_k.BruteForce``; ``serving_default`` is this
  without ranking heads;
- ``assets.extra/tf_serving_warmup_requests`` for ``serving_default``.

Only the variables the signatures read are saved (no optimizer slots, no
training state); the lookup layers (StringLookup, IntegerLookup, mtl_keras's
IdLookup) are tracked so their tables travel. The version is written to a
temporary folder and renamed into place, as ``mtl_keras.export`` does.
"""


from mtl_keras import export as mtl_export
from mtl_keras.backend import all_layers, keras, tf
from mtl_keras.features.layers import IdLookup

QUERY_EMBEDDING = "query_embedding"
TOP_K = "top_k"


def _specs(features, argument):
    if not isinstance(features, dict) or not features:
        raise ValueError(f"`{argument}` must be a non-empty dict {{input name: tf.TensorSpec}}; got {features!r}.")
    specs = {}
    for name, spec in features.items():
        if not isinstance(spec, tf.TensorSpec):
            raise ValueError(f"`{argument}[{name!r}]` must be a tf.TensorSpec; got {spec!r}.")
        specs[name] = tf.TensorSpec([None] + spec.shape[1:].as_list(), spec.dtype, name=name)
    return specs


def _lookups(*objects):
    """The lookup layers under the Keras layers (or bound methods of them) given."""
    lookups, seen = [], set()
    kinds = (keras.layers.StringLookup, keras.layers.IntegerLookup, IdLookup)
    for value in objects:
        owner = getattr(value, "__self__", value)
        if not isinstance(owner, keras.layers.Layer):
            continue
        for layer in all_layers(owner, include_self=True):
            if isinstance(layer, kinds) and id(layer) not in seen:
                seen.add(id(layer))
                lookups.append(layer)
    return lookups


def _single(heads, task):
    return tf.function(lambda **inputs: {task: heads(inputs)[task]})


def brute_force(query, candidates, k):
    """A ``BruteForce`` index of ``candidates`` = (ids [N], embeddings [N, D]) for ``query``."""
    import tensorflow_recommenders as tfrs

    if isinstance(candidates, tfrs.layers.factorized_top_k.TopK):
        return candidates
    ids, embeddings = candidates
    index = tfrs.layers.factorized_top_k.BruteForce(query, k=k)
    index.index(tf.convert_to_tensor(embeddings), tf.convert_to_tensor(ids))
    return index


def export_recommender(base_path, features, ranking=None, query=None, query_features=None,
                       candidates=None, k=10, version=None, warmup_batch_size=2, warmup_records=3):
    """Exports a recommender's ranking heads and retrieval tower; returns the version's path.

    Args:
        base_path: the model's folder (served as one model); created if missing.
        features: {input name: tf.TensorSpec} of the ranking inputs (dim 0 = batch).
        ranking: callable(features dict) -> {task: [B, ...]} (e.g. a TFRS model's
            ``call``), or None.
        query: callable(query features dict) -> [B, D] query embeddings, or None.
        query_features: {input name: tf.TensorSpec} of ``query``'s inputs (default ``features``).
        candidates: (ids [N], embeddings [N, D]) for a ``top_k`` signature, or an
            indexed ``tfrs.layers.factorized_top_k.TopK`` layer; needs ``query``.
        k: the number of candidates ``top_k`` returns.
        version: a non-negative integer; None = the newest + 1.

    Example:
    >>> ranking = lambda features: {"rating": tf.reduce_sum(features["x"], axis=1, keepdims=True)}
    >>> path = export_recommender("models/recommender", {"x": tf.TensorSpec([None, 3], tf.float32)}, ranking=ranking)
    >>> served = tf.saved_model.load(path).signatures["serving_default"]
    >>> served(x=tf.ones([2, 3]))["rating"].numpy().tolist()
    [[3.0], [3.0]]
    """
    features = _specs(features, "features")
    query_features = _specs(query_features, "query_features") if query_features is not None else features
    if ranking is None and query is None:
        raise ValueError("Give `ranking`, `query` or both: there is nothing to export.")
    if candidates is not None and query is None:
        raise ValueError("`candidates` needs `query`: top_k scores the candidates against query embeddings.")
    module, signatures = tf.Module(), {}

    def heads(inputs):
        outputs = ranking(inputs)
        if not isinstance(outputs, dict):
            raise ValueError(f"`ranking` must return a dict {{task: tensor}}; got {type(outputs).__name__}.")
        return {task: tf.identity(value, name=task) for task, value in outputs.items()}

    if ranking is not None:
        serve = tf.function(lambda **inputs: heads(inputs))
        signatures["serving_default"] = serve.get_concrete_function(**features)
        for task in signatures["serving_default"].structured_outputs:
            signatures[task] = _single(heads, task).get_concrete_function(**features)
    if query is not None:
        embed = tf.function(lambda **inputs: {QUERY_EMBEDDING: tf.identity(query(inputs))})
        signatures[QUERY_EMBEDDING] = embed.get_concrete_function(**query_features)
    if candidates is not None:
        # Not tracked as a Keras object (a TopK is a Model with no config); the signature
        # captures its candidate variables, which are saved with the others.
        index = brute_force(lambda inputs: query(inputs), candidates, k)
        top = tf.function(lambda **inputs: dict(zip(("scores", "ids"), index(inputs, k=k))))
        signatures[TOP_K] = top.get_concrete_function(**query_features)
    default_inputs = features if ranking is not None else query_features
    if "serving_default" not in signatures:
        signatures["serving_default"] = signatures[TOP_K if candidates is not None else QUERY_EMBEDDING]
    module.lookups = _lookups(ranking, query)
    module.serving_variables = mtl_export.signature_variables(signatures)
    target = mtl_export.write_version(
        base_path, version, lambda folder: tf.saved_model.save(module, folder, signatures=signatures),
        list(default_inputs.items()), warmup_batch_size, warmup_records,
    )
    return target
