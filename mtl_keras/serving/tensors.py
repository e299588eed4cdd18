"""TensorProto <-> NumPy, written as TF Serving writes responses.

Responses carry their values in the typed fields (``float_val``,
``int64_val``, ``string_val``...), as TF Serving's predict_util.cc writes them
(``Tensor::AsProtoField``): clients that read ``float_val`` directly, as TF
Serving's own tests do, work. Requests may use either encoding; raw
``tensor_content`` (what ``tf.make_tensor_proto`` and the official clients
send for numbers) and full typed fields are read without TensorFlow's slower
generic path.
"""

import functools
import math

import numpy as np
import tensorflow as tf

# numpy dtype kind/size -> the TensorProto field AsProtoField fills.
_FIELDS = {
    "float32": "float_val", "float64": "double_val", "int32": "int_val", "int16": "int_val",
    "int8": "int_val", "uint8": "int_val", "uint16": "int_val", "int64": "int64_val",
    "uint32": "uint32_val", "uint64": "uint64_val", "bool": "bool_val", "complex64": "scomplex_val",
    "complex128": "dcomplex_val", "float16": "half_val",
}


def fill(proto, array):
    """Writes ``array`` into the empty TensorProto ``proto`` (a response field, say) in place, in typed fields."""
    array = np.asarray(array)
    if array.dtype.kind in "SUO":
        proto.dtype = tf.string.as_datatype_enum
        proto.string_val.extend(v if isinstance(v, bytes) else str(v).encode() for v in array.ravel())
    else:
        field = _FIELDS.get(array.dtype.name)
        if field is None:  # bfloat16 and other types numpy names differently
            proto.CopyFrom(tf.make_tensor_proto(array))
            return proto
        proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
        flat = array.ravel()
        if field == "half_val":
            flat = flat.view(np.uint16)
        elif field in ("scomplex_val", "dcomplex_val"):
            flat = flat.view(flat.real.dtype)
        getattr(proto, field).extend(flat.tolist())
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    return proto


def fill_content(proto, array):
    """Writes a numeric ``array`` as raw ``tensor_content`` (compact requests; what tf.make_tensor_proto sends)."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        return fill(proto, array)
    proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


@functools.lru_cache(maxsize=None)
def _numpy_dtype(enum):
    return tf.as_dtype(enum).as_numpy_dtype


_TYPED = {1: "float_val", 2: "double_val", 3: "int_val", 9: "int64_val", 10: "bool_val"}


def to_array(proto):
    """The array of a TensorProto; ValueError when its values do not fit its shape."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=_numpy_dtype(proto.dtype))
        if flat.size != math.prod(dims):
            raise ValueError("tensor_content does not match the shape")
        return flat.reshape(dims)
    field = _TYPED.get(proto.dtype)
    if field is not None:
        values = getattr(proto, field)
        if len(values) == math.prod(dims) and len(values):
            return np.array(values, dtype=_numpy_dtype(proto.dtype)).reshape(dims)
    return tf.make_ndarray(proto)  # short typed fields repeat their last value, as TensorFlow reads them
