"""Classify and regress bodies of TF Serving's REST API, as its json_tensor.cc reads and writes them.

``{"signature_name"?, "context"?, "examples": [{feature: value or list}]}``
becomes the request's tf.Examples (integers to int64_list, other numbers to
float_list, strings and ``{"b64": ...}`` to bytes_list, one kind per
feature); results print as ``{"results": ...}``.
"""

import json

from tensorflow.core.example import feature_pb2

from mtl_keras.serving import json_values, validation
from mtl_keras.serving.json_tensors import decimal
from mtl_keras.serving.json_values import decode_base64, is_base64


def _feature_kind_error(name, feature):
    kind = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}.get(feature.WhichOneof("kind"), "UNKNOWN")
    return validation.invalid(f"Unexpected element type in feature: {name} expecting type: {kind}")


def _add_to_feature(value, name, feature):
    kind = feature.WhichOneof("kind")
    if value is None or isinstance(value, list) or (isinstance(value, dict) and not is_base64(value)):
        raise validation.invalid(f"Feature: {name} has element with unexpected JSON type: {json_values.json_type(value)}")
    if isinstance(value, bool) or (isinstance(value, int) and not isinstance(value, bool)):
        if kind not in (None, "int64_list"):
            raise _feature_kind_error(name, feature)
        if not isinstance(value, bool) and value >= 2**63:
            raise validation.invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        if not isinstance(value, bool) and value < -(2**63):
            raise validation.invalid(f"Feature: {name} has element with unexpected JSON type: Number")
        feature.int64_list.value.append(int(value))
    elif isinstance(value, float):
        if kind not in (None, "float_list"):
            raise _feature_kind_error(name, feature)
        feature.float_list.value.append(value)
    else:
        if kind not in (None, "bytes_list"):
            raise _feature_kind_error(name, feature)
        data = decode_base64(value) if isinstance(value, dict) else value.encode("utf-8", "surrogatepass")
        feature.bytes_list.value.append(data)


def example(value, target):
    """json_tensor.cc's MakeExampleFromJsonObject: {feature: value or list of values} into ``target``."""
    if not isinstance(value, dict):
        raise validation.invalid(f"Example must be JSON object but got JSON {json_values.json_type(value)}")
    for name, content in value.items():
        feature = feature_pb2.Feature()
        for item in content if isinstance(content, list) else [content]:
            _add_to_feature(item, name, feature)
        target.features.feature[name].CopyFrom(feature)


def fill_examples(document, request):
    """The ``input`` of a Classification/RegressionRequest from ``context`` and ``examples``."""
    has_context = "context" in document
    if has_context:
        example(document["context"], request.input.example_list_with_context.context)
    if "examples" not in document:
        raise json_values.format_error(document, "When method is classify, key 'examples' is expected and was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise json_values.format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise json_values.format_error(document, "'examples' value is an empty array")
    target = request.input.example_list_with_context if has_context else request.input.example_list
    for value in examples:
        example(value, target.examples.add())


def classify_response(result):
    rows = []
    for classifications in result.classifications:
        rows.append("[" + ", ".join(f"[{json.dumps(c.label)}, {decimal(c.score, True)}]" for c in classifications.classes) + "]")
    return '{"results": [' + ", ".join(rows) + "]}"


def regress_response(result):
    return '{"results": [' + ", ".join(decimal(r.value, True) for r in result.regressions) + "]}"
