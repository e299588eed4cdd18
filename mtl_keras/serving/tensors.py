"""TensorProto <-> NumPy with a fast path for the common case.

``tf.make_tensor_proto`` and ``tf.make_ndarray`` cost more than a small model
call; for numeric arrays the proto is just dtype, shape and the raw bytes in
``tensor_content`` (what the official clients send), so build and read that
directly. Anything else (strings, typed value fields) takes TensorFlow's path.
"""

import functools
import math

import numpy as np
import tensorflow as tf


def fill(proto, array):
    """Writes ``array`` into the empty TensorProto ``proto`` (a response field, say) in place."""
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        proto.CopyFrom(tf.make_tensor_proto(array))
        return proto
    proto.dtype = tf.as_dtype(array.dtype).as_datatype_enum
    for size in array.shape:
        proto.tensor_shape.dim.add().size = size
    proto.tensor_content = np.ascontiguousarray(array).tobytes()
    return proto


@functools.lru_cache(maxsize=None)
def _numpy_dtype(enum):
    return tf.as_dtype(enum).as_numpy_dtype


def to_array(proto):
    """The array of a TensorProto; ValueError when its bytes do not fill its shape."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=_numpy_dtype(proto.dtype))
        if flat.size != math.prod(dims):
            raise ValueError("tensor_content does not match the shape")
        return flat.reshape(dims)
    return tf.make_ndarray(proto)
