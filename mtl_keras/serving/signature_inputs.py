"""What a client sends, fitted to a model's SignatureDef: dtypes, shapes, tf.Examples.

TF Serving checks a request strictly ("Expects arg[0] to be float but
double is provided") and so does ``mtl-keras serve``; the client knows the
signature from ``GetModelMetadata`` and sends what it expects instead:
NumPy arrays, lists and scalars are cast to the input's dtype (never
lossily: a fractional float for an integer input, a number for a string
input is a ``ValueError`` naming the input) and shaped to its shape (a
scalar or one row becomes a batch of one, ``[N]`` becomes ``[N, 1]``).
"""

import sys

import numpy as np
import tensorflow as tf

def _dims(info):
    """The TensorInfo's dims (-1 unknown), or None for an unknown rank."""
    return None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]


def _matches(shape, dims):
    return len(shape) == len(dims) and all(d in (-1, s) for s, d in zip(shape, dims))


def _described(info):
    dims = _dims(info)
    shape = "unknown rank" if dims is None else f"shape {[None if d == -1 else d for d in dims]}"
    return f"{tf.as_dtype(info.dtype).name} {shape}"


def cast_input(signature, name, value, info):
    """``value`` as the array ``info`` (a TensorInfo of signature ``signature``) expects.

    Example:
    >>> from tensorflow.core.protobuf.meta_graph_pb2 import TensorInfo
    >>> info = TensorInfo(dtype=tf.float32.as_datatype_enum, tensor_shape=tf.TensorShape([None, 1]).as_proto())
    >>> cast_input("serving_default", "price", [9.5, 12], info).tolist()
    [[9.5], [12.0]]
    >>> cast_input("serving_default", "price", ["cheap"], info)
    Traceback (most recent call last):
    ...
    ValueError: Input 'price' of signature 'serving_default' (expects float32 shape [None, 1]): got strings; send numbers.
    """
    target = tf.as_dtype(info.dtype)
    where = f"Input {name!r} of signature {signature!r} (expects {_described(info)})"
    array = np.asarray(value.numpy() if hasattr(value, "numpy") else value)
    if array.dtype == object and array.size and not isinstance(array.flat[0], (str, bytes)):
        array = np.asarray(array.tolist())  # nested lists of numbers
    strings = array.dtype.kind in "USO"
    if target == tf.string:
        if not strings and array.size:
            raise ValueError(f"{where}: got {array.dtype} values; send strings (ids as text).")
        array = np.array([v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()],
                         dtype=object).reshape(array.shape)
    else:
        if strings and array.size:
            raise ValueError(f"{where}: got strings; send numbers.")
        if (target.is_integer or target.is_bool) and array.dtype.kind == "f":
            whole = np.isfinite(array) & (array == np.round(array))
            if not whole.all():
                raise ValueError(f"{where}: got the non-integral value {array[~whole].ravel()[0].item()!r}.")
        array = array.astype(target.as_numpy_dtype)
    return _fit_shape(where, array, _dims(info))


def _fit_shape(where, array, dims):
    if dims is None:
        return array
    if array.ndim == 0:
        array = array.reshape(1)  # a scalar: one example's value
    if array.ndim < len(dims) and _matches(array.shape, dims[1:]):
        array = array[None]  # one example
    while array.ndim < len(dims) and dims[array.ndim] == 1:
        array = array[..., None]  # [N] for [N, 1]
    if not _matches(array.shape, dims):
        raise ValueError(f"{where}: got shape {list(array.shape)}.")
    return array


def input_kinds(signatures):
    """{input name: "float" | "int" | "string"} over every predict signature's inputs (the raw
    features of an mtl_keras export), for building tf.Examples of the right kind per feature."""
    kinds = {}
    for definition in signatures.values():
        for name, info in definition.inputs.items():
            dtype = tf.as_dtype(info.dtype)
            kind = "string" if dtype == tf.string else "float" if dtype.is_floating else "int"
            kinds.setdefault(name, kind)
    return kinds


def _rows(examples):
    """A list of {feature: value} from a DataFrame, a dict of columns or a list of dicts."""
    if hasattr(examples, "to_dict") and hasattr(examples, "columns"):  # a pandas DataFrame
        return examples.to_dict("records")
    if isinstance(examples, dict):
        columns = {k: list(v.numpy() if hasattr(v, "numpy") else v) for k, v in examples.items()}
        counts = {len(c) for c in columns.values()}
        if len(counts) > 1:
            raise ValueError(f"`examples` columns differ in length: { {k: len(c) for k, c in columns.items()} }.")
        return [{k: c[i] for k, c in columns.items()} for i in range(counts.pop() if counts else 0)]
    return list(examples)


def _missing(value):
    pandas = sys.modules.get("pandas")  # pandas.NA only where pandas is in use
    return value is None or (isinstance(value, float) and value != value) or (
        pandas is not None and value is pandas.NA)


def to_examples(examples, kinds):
    """``examples`` as tf.train.Example protos; each feature's kind from ``kinds`` (else its values).

    A missing value (None, NaN, pandas.NA) leaves the feature out of that
    example, as tf.Example says "missing"; a list is a feature's values.

    Example:
    >>> first, second = to_examples({"price": [9, None], "user": ["u1", "u2"]}, {"price": "float"})
    >>> list(first.features.feature["price"].float_list.value), "price" in second.features.feature
    ([9.0], False)
    """
    protos = []
    for row in _rows(examples):
        example = tf.train.Example()
        for name, value in row.items():
            values = [value] if np.ndim(value) == 0 else list(np.ravel(value))
            values = [v.item() if isinstance(v, np.generic) else v for v in values if not _missing(v)]
            if not values:
                continue
            kind = kinds.get(name) or (
                "string" if isinstance(values[0], (str, bytes)) else
                "float" if isinstance(values[0], float) else "int")
            feature = example.features.feature[name]
            try:
                if kind == "string":
                    feature.bytes_list.value.extend(v if isinstance(v, bytes) else str(v).encode() for v in values)
                elif kind == "float":
                    feature.float_list.value.extend(float(v) for v in values)
                else:
                    feature.int64_list.value.extend(_integer(v) for v in values)
            except (TypeError, ValueError):
                raise ValueError(f"Feature {name!r} expects {kind} values; got {values[:3]!r}.") from None
        protos.append(example)
    return protos


def _integer(value):
    if isinstance(value, float) and value != int(value):
        raise ValueError(value)
    return int(value)
