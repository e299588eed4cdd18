"""TensorProto <-> NumPy with a fast path for the common case.

``tf.make_tensor_proto`` and ``tf.make_ndarray`` cost more than a small model
call; for numeric arrays the proto is just dtype, shape and the raw bytes in
``tensor_content`` (what the official clients send), so build and read that
directly. Anything else (strings, typed value fields) takes TensorFlow's path.
"""

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2


def to_proto(array):
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        return tf.make_tensor_proto(array)
    array = np.ascontiguousarray(array)
    proto = tensor_pb2.TensorProto(
        dtype=tf.as_dtype(array.dtype).as_datatype_enum,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
        ),
    )
    proto.tensor_content = array.tobytes()
    return proto


def to_array(proto):
    """The array of a TensorProto; ValueError when its bytes do not fill its shape."""
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        dtype = tf.as_dtype(proto.dtype).as_numpy_dtype
        flat = np.frombuffer(proto.tensor_content, dtype=dtype)
        if flat.size != int(np.prod(dims)):
            raise ValueError("tensor_content does not match the shape")
        return flat.reshape(dims)
    return tf.make_ndarray(proto)
