"""Predict bodies of TF Serving's REST API <-> tensors, as its json_tensor.cc converts them.

``{"instances": [...]}`` (row format) or ``{"inputs": ...}`` (columnar)
become arrays of the signature's dtypes with json_tensor.cc's checks and
words (a value of the wrong JSON type, lists of uneven sizes, missing named
inputs...); outputs print as TF Serving prints them (floats in the shortest
form that reads back, ``NaN``/``Infinity``, ``*_bytes`` outputs as
``{"b64": ...}``).
"""

import base64
import json
import math

import grpc

import numpy as np
import tensorflow as tf

from mtl_keras.serving import json_values, validation
from mtl_keras.serving.json_values import decode_base64, is_base64
from mtl_keras.serving.tensors import fill_content, to_array

_INT_RANGES = {
    tf.int32: (-(2**31), 2**31 - 1), tf.int16: (-(2**31), 2**31 - 1), tf.int8: (-(2**31), 2**31 - 1),
    tf.uint8: (-(2**31), 2**31 - 1), tf.int64: (-(2**63), 2**63 - 1), tf.uint32: (0, 2**32 - 1),
    tf.uint64: (0, 2**64 - 1),
}


def _dense_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _type_error(value, dtype):
    name = {"float32": "float", "float64": "double"}.get(dtype.name, dtype.name)
    return validation.invalid(
        f"JSON Value: {json_values.debug_string(value)} Type: {json_values.json_type(value)} is not of expected type: {name}"
    )


def _scalar(value, dtype):
    """One JSON value as a value of ``dtype``, with json_tensor.cc's AddValueToTensor checks."""
    if dtype == tf.string:
        if isinstance(value, dict):
            return decode_base64(value)
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict):
        raise _type_error(value, dtype)
    if dtype == tf.bool:
        if not isinstance(value, bool):
            raise _type_error(value, dtype)
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _type_error(value, dtype)
    if dtype.is_floating:
        return value
    low, high = _INT_RANGES.get(dtype, (None, None))
    if low is None:
        raise validation.RequestError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"Conversion of JSON Value: {json_values.debug_string(value)} to type: {dtype.name}",
        )
    if not isinstance(value, int) or not low <= value <= high:
        raise _type_error(value, dtype)
    return value


def _fill(value, level, shape, dtype, values):
    """json_tensor.cc's FillTensorProto: every list at its level has the size of the first one."""
    if not isinstance(value, list):
        if level != len(shape):
            raise validation.invalid(
                f"JSON Value: {json_values.debug_string(value)} found at incorrect level: {level + 1} "
                f"in the JSON DOM. Expected at level: {len(shape)}"
            )
        values.append(_scalar(value, dtype))
        return
    if level >= len(shape):
        raise validation.invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise validation.invalid(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}"
        )
    for member in value:
        _fill(member, level + 1, shape, dtype, values)


def tensor_of(value, dtype):
    """(array, shape) of one JSON tensor for ``dtype``: NumPy for plain numbers, else the checked walk."""
    shape = _dense_shape(value)
    if dtype.is_floating or dtype.is_integer:
        try:
            quick = np.array(value)
        except (ValueError, TypeError, OverflowError):
            quick = None
        if quick is not None and list(quick.shape) == shape and (
            quick.dtype == np.float64 and dtype.is_floating or quick.dtype == np.int64 and dtype.is_floating
            or quick.dtype == np.int64 and dtype in (tf.int64, tf.int32) and (
                dtype == tf.int64 or not quick.size or (quick.min() >= -(2**31) and quick.max() < 2**31))
        ):
            return quick.astype(dtype.as_numpy_dtype)
    values = []
    _fill(value, 0, shape, dtype, values)
    if dtype == tf.string:
        array = np.empty(len(values), dtype=object)
        array[:] = values
        return array.reshape(shape)
    return np.array(values, dtype=dtype.as_numpy_dtype).reshape(shape)


def _instances(instances, specs):
    """json_tensor.cc's FillTensorMapFromInstancesList: rows of one input, or rows of named inputs."""
    if not (isinstance(instances[0], dict) and not is_base64(instances[0])) and len(specs) > 1:
        raise validation.invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map"
        )
    objects = isinstance(instances[0], dict) and not is_base64(instances[0])
    names = sorted(specs)
    rows, shapes = {}, {}

    def add(item, name):
        if name not in specs:
            raise validation.invalid(f"JSON object: does not have named input: {name}")
        array = tensor_of(item, specs[name].dtype)
        if name in shapes and shapes[name] != array.shape:
            if int(np.prod(shapes[name])) != array.size:
                words = f"Expecting tensor size: {int(np.prod(shapes[name]))} but got: {array.size}"
            else:
                words = f"Expecting shape [{','.join(map(str, shapes[name]))}] but got: [{','.join(map(str, array.shape))}]"
            raise validation.invalid(words)
        shapes[name] = array.shape
        rows.setdefault(name, []).append(array)

    for index, row in enumerate(instances):
        if objects:
            if not (isinstance(row, dict) and not is_base64(row)):
                raise validation.invalid(f"Expecting object but got list at item {index} of input list")
            for name, item in row.items():
                try:
                    add(item, name)
                except validation.RequestError as error:
                    raise validation.invalid(
                        f"Failed to process element: {index} key: {name} of 'instances' list. "
                        f"Error: INVALID_ARGUMENT: {error.message}"
                    ) from None
            if set(row) != set(names):
                raise validation.invalid(
                    f"Failed to process element: {index} of 'instances' list. JSON object: {json_values.debug_string(row)} "
                    f"keys must be equal to: {','.join(names)}"
                )
        else:
            if isinstance(row, dict) and not is_base64(row):
                raise validation.invalid(f"Expecting value/list but got object at item {index} of input list")
            try:
                add(row, names[0])
            except validation.RequestError as error:
                raise validation.invalid(
                    f"Failed to process element: {index} of 'instances' list. Error: INVALID_ARGUMENT: {error.message}"
                ) from None
    return {name: np.stack(arrays) if arrays[0].dtype != object else _stack_objects(arrays)
            for name, arrays in rows.items()}


def _stack_objects(arrays):
    stacked = np.empty((len(arrays),) + arrays[0].shape, dtype=object)
    for index, array in enumerate(arrays):
        stacked[index, ...] = array  # element-wise, also for 0-d rows (a bare string per instance)
    return stacked


def _inputs(value, specs):
    """json_tensor.cc's FillTensorMapFromInputsMap: one tensor, or an object of named tensors."""
    if not isinstance(value, dict) or is_base64(value):
        if len(specs) > 1:
            raise validation.invalid(
                "inputs is a plain value/list, but expecting an object as multiple input tensors required "
                "as per tensorinfo_map"
            )
        name = next(iter(specs))
        return {name: tensor_of(value, specs[name].dtype)}
    arrays = {}
    for name in sorted(specs):
        if name not in value:
            raise validation.invalid(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = tensor_of(value[name], specs[name].dtype)
    return arrays


def predict_inputs(document, specs, signature):
    """({alias: array}, row_format) of a predict body, after the servable and signature are known."""
    if not specs:
        raise validation.invalid(f"Failed to get input map for signature: {signature or 'DEFAULT'}")
    if "instances" in document:
        if "inputs" in document:
            raise json_values.format_error(document, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ")
        instances = document["instances"]
        if not isinstance(instances, list):
            raise json_values.format_error(document, "Expecting 'instances' to be an list/array")
        if not instances:
            raise json_values.format_error(document, "No values in 'instances' array")
        return _instances(instances, specs), True
    if "inputs" in document:
        return _inputs(document["inputs"], specs), False
    raise validation.invalid("Missing 'inputs' or 'instances' key")


def fill_request(request, arrays):
    for name, array in arrays.items():
        fill_content(request.inputs[name], array)


# --- responses ------------------------------------------------------------------------------------------

def decimal(value, single):
    """A float as TF Serving's WriteDecimal prints it: shortest %g that reads back, always with . or e."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:.6g}"
    back = np.float32(text) if single else float(text)
    if back != (np.float32(value) if single else value):
        text = f"{value:.9g}" if single else f"{value:.17g}"
    if "." not in text and "e" not in text:
        text += ".0"
    return text


def _values(array, as_bytes):
    """JSON text of one output tensor (nested lists)."""
    if array.dtype.kind == "f":
        single = array.dtype != np.float64
        write = lambda v: decimal(v, single)  # noqa: E731
    elif array.dtype.kind == "b":
        write = lambda v: "true" if v else "false"  # noqa: E731
    elif array.dtype.kind in "iu":
        write = str
    elif as_bytes:
        write = lambda v: json.dumps({"b64": base64.b64encode(v).decode()})  # noqa: E731
    else:
        write = lambda v: json.dumps(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))  # noqa: E731

    def nest(item):
        if isinstance(item, np.ndarray) and item.ndim:
            return "[" + ", ".join(nest(x) for x in item) + "]"
        return write(item.item() if isinstance(item, np.ndarray) and item.dtype != object else item)

    return nest(array)


def predict_response(outputs, row_format):
    """The JSON text of a PredictResponse's outputs ({alias: TensorProto}), row or columnar."""
    arrays = {name: to_array(proto) for name, proto in sorted(outputs.items())}
    if not arrays:
        raise validation.invalid("Cannot convert empty tensor map to JSON")
    as_bytes = {name: a.dtype == object and name.endswith("_bytes") for name, a in arrays.items()}
    if not row_format:
        if len(arrays) == 1:
            name, array = next(iter(arrays.items()))
            return '{"outputs": ' + _values(array, as_bytes[name]) + "}"
        return '{"outputs": {' + ", ".join(
            f"{json.dumps(n)}: {_values(a, as_bytes[n])}" for n, a in arrays.items()) + "}}"
    batch = None
    for name, array in arrays.items():
        if array.ndim == 0:
            raise validation.invalid(f"Tensor name: {name} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise validation.invalid(
                f"Tensor name: {name} has inconsistent batch size: {array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    if len(arrays) == 1:
        name, array = next(iter(arrays.items()))
        rows = [_values(row, as_bytes[name]) for row in array]
    else:
        rows = ["{" + ", ".join(f"{json.dumps(n)}: {_values(a[i], as_bytes[n])}" for n, a in arrays.items()) + "}"
                for i in range(batch)]
    return '{"predictions": [' + ", ".join(rows) + "]}"
