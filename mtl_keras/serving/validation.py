"""Predict request checks in TF Serving's order, with its status codes and messages.

Each check raises ``RequestError(code, message)``; the message is cut to 1024
characters with "...TRUNCATED" as TF Serving does. Tensor sizes are checked
from the proto's declared shape before anything is materialised, so a proto
claiming 10^9 elements is refused without allocating them.
"""

import math

import grpc
import tensorflow as tf

from mtl_keras.serving.tensors import to_array

# TensorFlow's error classes -> the gRPC code TF Serving answers with (same numbering).
_CODES = {code.value[0]: code for code in grpc.StatusCode}

MAX_MESSAGE = 1024
MAX_ELEMENTS = 64 * 1024 * 1024


class RequestError(Exception):
    def __init__(self, code, message):
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - len("...TRUNCATED")] + "...TRUNCATED"
        super().__init__(message)
        self.code = code
        self.message = message


def from_tensorflow(error):
    """The RequestError TF Serving answers for a TensorFlow op error raised by the model call."""
    return RequestError(_CODES.get(error.error_code, grpc.StatusCode.INTERNAL), error.message)


def invalid(message):
    return RequestError(grpc.StatusCode.INVALID_ARGUMENT, message)


def model_spec(request, labels=None):
    """(name, version or None) after checks 1-3."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    spec = request.model_spec
    if not spec.name:
        raise invalid("ModelSpec has no name specified.")
    if spec.WhichOneof("version_choice") == "version_label":
        label = spec.version_label
        if label not in (labels or {}):
            raise invalid(f"Unrecognized servable version label: {label}")
        return spec.name, labels[label]
    if spec.HasField("version"):
        return spec.name, spec.version.value
    return spec.name, None


def not_found(name, version):
    where = f"Latest({name})" if version is None else f"Specific({name}, {version})"
    return RequestError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {where}")


def signature(servable, name):
    key = name or "serving_default"
    if key not in servable.signatures:
        raise RequestError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
    return key


def _names(names):
    return "{" + ",".join(sorted(names)) + "}"


def inputs(request, specs):
    """{alias: np.ndarray} after checks 6-8 and 10 (item 11: shapes are TensorFlow's to judge)."""
    sent, expected = set(request.inputs), set(specs)
    if len(sent) != len(expected):
        raise invalid(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({_names(sent)}) != len({_names(expected)}). "
            f"Sent extra: {_names(sent - expected)}. Missing but required: {_names(expected - sent)}."
        )
    extra = sorted(sent - expected)
    if extra:
        alias = extra[0]
        raise invalid(
            f"input tensor alias not found in signature: {alias}. "
            f"Inputs expected to be in the set {_names(expected)}."
        )
    arrays = {}
    for index, alias in enumerate(sorted(specs)):
        proto, spec = request.inputs[alias], specs[alias]
        dims = [d.size for d in proto.tensor_shape.dim]
        if any(d < 0 for d in dims):
            raise invalid(f"tensor parsing error: {alias}")
        elements = math.prod(dims)
        if elements > MAX_ELEMENTS:
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"input {alias} has {elements} elements, over the limit of {MAX_ELEMENTS}",
            )
        if proto.dtype != spec.dtype.as_datatype_enum:
            got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "invalid"
            raise invalid(
                f"Expects arg[{index}] to be {_type_name(spec.dtype)} but {_type_name(got)} is provided"
            )
        try:
            array = to_array(proto)
        except Exception:
            raise invalid(f"tensor parsing error: {alias}") from None
        if list(array.shape) != dims:
            raise invalid(f"tensor parsing error: {alias}")
        # No comparison with the declared shape: TF Serving feeds the tensor and TensorFlow decides.
        arrays[alias] = array
    return arrays


def _type_name(dtype):
    """TF Serving's DataTypeString spelling: float, double, int32, string..."""
    name = tf.dtypes.as_dtype(dtype).name if not isinstance(dtype, str) else dtype
    return {"float32": "float", "float64": "double"}.get(name, name)


def output_filter(request, outputs):
    """The output aliases to return, after check 9."""
    chosen = []
    for alias in request.output_filter:
        if alias not in outputs:
            raise invalid(
                f"output tensor alias not found in signature: {alias} "
                f"Outputs expected to be in the set {_names(outputs)}."
            )
        if alias in chosen:
            raise invalid(f"duplicate output tensor alias: {alias}")
        chosen.append(alias)
    return chosen or list(outputs)
