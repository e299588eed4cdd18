"""Raw feature values as users hold them (NumPy, lists, ragged lists, tensors, pandas) into checked arrays.

Used by ``FeatureSpec.adapt`` and by ``prepare_inputs``, the hook a
FeatureSpec model applies to ``x`` before ``fit`` / ``evaluate`` / ``predict``:
Keras 3 refuses NumPy string arrays ("Invalid dtype: str96"), so columns
become ``tf.constant``; every error names the feature and what it expected.
"""

import numpy as np

from mtl_keras.backend import tf
from mtl_keras.features import frames
from mtl_keras.features.layers import INT_PAD, RawFeature, pad_value


def _decoded(value):
    return value.decode() if isinstance(value, bytes) else value


def _is_ragged(array):
    """An object array whose entries are rows (lists of ids of varying length)."""
    return array.dtype == object and array.size > 0 and isinstance(array.flat[0], (list, tuple, np.ndarray))


def _numpy(values):
    """``values`` as a NumPy array: bytes decoded to str, ragged rows as an object array of rows."""
    if isinstance(values, tf.RaggedTensor):
        values = values.to_list()
    elif isinstance(values, (tf.Tensor, tf.Variable)):
        values = values.numpy()
    if isinstance(values, np.ndarray) and values.dtype != object:
        return values
    array = np.asarray(values, dtype=object)
    if _is_ragged(array):
        return array  # padded by the caller
    if array.size and isinstance(array.flat[0], (str, bytes)):
        return np.array([_decoded(v) for v in array.ravel()]).reshape(array.shape)
    return np.asarray(values)


def _kind(array):
    """'string', 'int', 'float' or 'other' from a flat array's dtype."""
    if array.dtype.kind in "USO":
        return "string" if array.size == 0 or isinstance(array.flat[0], (str, bytes)) else "other"
    return {"i": "int", "u": "int", "b": "int", "f": "float"}.get(array.dtype.kind, "other")


def infer_id_dtype(feature, values):
    """'string' or 'int64' for id values, from their NumPy dtype."""
    array = _numpy(values)
    if _is_ragged(array):
        array = _numpy([v for row in array for v in row])
    if array.size == 0 and array.dtype.kind == "f":
        return "int64"  # no ids at all: adapt then says so
    kind = _kind(array)
    if kind in ("string", "int"):
        return "string" if kind == "string" else "int64"
    raise ValueError(f"Feature {feature!r}: ids must be strings or integers; got dtype {array.dtype}.")


def pad_rows(feature, rows, value_dtype, max_length=None):
    """Ragged rows (lists of ids) as a padded [N, L] array, L = the longest row (at most max_length)."""
    rows = [list(np.asarray(r).ravel()) for r in rows]
    longest = max((len(r) for r in rows), default=0)
    length = max(1, min(longest, max_length) if max_length else longest)
    pad = pad_value(value_dtype)
    out = np.full((len(rows), length), pad, dtype=object if value_dtype == "string" else np.int64)
    for i, row in enumerate(rows):
        row = row[:length]
        if row:
            out[i, : len(row)] = [_decoded(v) for v in row]
    return out.astype(str) if value_dtype == "string" else out


def column_array(feature, kind, value_dtype, values, width=1, max_length=None):
    """``values`` of one feature as a checked NumPy array ([N], [N, width] or [N, L])."""
    array = _numpy(values)
    if kind == "sequence" and _is_ragged(array):
        array = pad_rows(feature, array, value_dtype, max_length)
    got = _kind(array)
    if kind == "numeric":
        if got not in ("int", "float"):
            raise ValueError(f"Feature {feature!r} expects numbers (float32); got dtype {array.dtype}.")
        return array.astype(np.float32)
    expected = "string" if value_dtype == "string" else "int"
    if got != expected:
        what = "strings" if value_dtype == "string" else "int64 ids"
        raise ValueError(f"Feature {feature!r} expects {what}; got dtype {array.dtype} ({got} values).")
    if expected == "string":
        return array.astype(str)
    array = array.astype(np.int64)
    if array.size and array.min() < INT_PAD:
        allowed = "(-1 pads a sequence)" if kind == "sequence" else "(-1: missing, the OOV row)"
        raise ValueError(f"Feature {feature!r} expects ids >= 0 {allowed}; got {int(array.min())}.")
    return array


def raw_features(model):
    """{input name: RawFeature layer} of a FeatureSpec model ({} for other models)."""
    layers = getattr(model, "layers", None) or []
    return {layer.feature: layer for layer in layers if isinstance(layer, RawFeature)}


def prepare_inputs(model, x):
    """``x`` ready for ``model``'s fit / evaluate / predict / call.

    A DataFrame (or dict of Series) becomes NumPy columns first, missing
    values as each feature's "unknown" (``features.frames``). A dict of raw
    columns is checked against the model's features (missing
    feature, wrong dtype, negative id: ``ValueError`` naming the feature),
    ragged sequences are padded and every column becomes a ``tf.constant``.
    Columns the model does not read are dropped. Anything else (a
    tf.data.Dataset, a model without features) is returned unchanged.

    Args:
        model: the model whose features read ``x``.
        x: what fit / evaluate / predict / call received.

    Returns:
        The prepared ``x``.

    Raises:
        ValueError: naming the feature a raw column does not fit.

    Example:
    >>> from mtl_keras import models
    >>> from mtl_keras.features import Categorical, FeatureSpec, Numeric
    >>> spec = FeatureSpec([Numeric("price"), Categorical("device", vocabulary=["ios", "web"])])
    >>> spec.adapt({"price": np.array([1.0, 2.0]), "device": np.array(["ios", "web"])})
    >>> model = models.mmoe(spec, ["ctr", "cvr"], num_experts=2, expert_units=(4,))
    >>> x = prepare_inputs(model, {"price": [3.0], "device": ["web"], "unused": [0]})
    >>> sorted(x), x["price"].dtype.name
    (['device', 'price'], 'float32')
    """
    features = raw_features(model)
    if frames.is_frame(x):
        x = frames.columns(x, {name: (layer.kind, layer.value_dtype) for name, layer in features.items()})
    if not features or not isinstance(x, dict):
        return x
    prepared = {}  # only the model's features: columns it does not read stay behind
    for name, layer in features.items():
        if name not in x:
            raise ValueError(
                f"Feature {name!r} is missing from the inputs: the model expects "
                f"{layer.value_dtype} {layer.kind} values for it; got keys {sorted(x)}."
            )
        if tf.is_tensor(x[name]) and not hasattr(x[name], "numpy"):
            continue  # a symbolic tensor (inside a tf.function): the graph checks it
        array = column_array(name, layer.kind, layer.value_dtype, x[name], layer.width, layer.max_length)
        # Tensors for every column: Keras 3 refuses NumPy strings, and a call mixing
        # NumPy arrays with tensors in one dict.
        prepared[name] = tf.constant(array)
    return prepared


def prepare_arguments(model, args, kwargs):
    """``(args, kwargs)`` of fit / evaluate / predict with ``x`` (and ``validation_data``'s x) prepared.

    Args:
        model: the model whose features read ``x``.
        args, kwargs: the positional and keyword arguments of the call.

    Returns:
        ``(args, kwargs)``, each ``x`` as ``prepare_inputs`` returns it.

    Example:
    >>> from mtl_keras import models
    >>> from mtl_keras.features import FeatureSpec, Numeric
    >>> spec = FeatureSpec([Numeric("price")])
    >>> spec.adapt({"price": np.array([1.0, 2.0])})
    >>> model = models.shared_bottom(spec, ["ctr"], bottom_units=(4,))
    >>> args, kwargs = prepare_arguments(model, ({"price": [3.0]},), {"validation_data": ({"price": [1.0]}, [1])})
    >>> tf.is_tensor(args[0]["price"]), tf.is_tensor(kwargs["validation_data"][0]["price"])
    (True, True)
    """
    args = list(args)
    if args:
        args[0] = prepare_inputs(model, args[0])
    elif "x" in kwargs:
        kwargs = dict(kwargs, x=prepare_inputs(model, kwargs["x"]))
    if len(args) > 1:
        args[1] = frames.labels(args[1])
    elif "y" in kwargs:
        kwargs = dict(kwargs, y=frames.labels(kwargs["y"]))
    validation = kwargs.get("validation_data")
    if isinstance(validation, (tuple, list)) and validation:
        prepared = (prepare_inputs(model, validation[0]), *(frames.labels(v) for v in validation[1:2]))
        kwargs = dict(kwargs, validation_data=prepared + tuple(validation[2:]))
    return tuple(args), kwargs
