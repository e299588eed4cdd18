"""Classify, Regress and MultiInference as TF Serving runs them (classifier.cc, regressor.cc, multi_inference.cc).

Each takes a servable and a request's ``Input`` (tf.Examples, optionally with
a context), feeds the serialized Examples to the signature's one input
``inputs`` and converts its outputs: ``classes`` (string) and/or ``scores``
(float), each [batch, num_classes], for Classify; ``outputs`` (float) of
[batch] or [batch, 1] for Regress. As in TF Serving with its default flags the
signature's method name is not checked, its inputs and outputs are; errors
carry TF Serving's codes and words.
"""

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from mtl_keras.serving import validation

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


def _debug_string(definition):
    return text_format.MessageToString(definition)


def _definition(servable, signature_name):
    key = signature_name or "serving_default"
    definition = servable.signature_defs.get(key)
    if definition is None or key not in servable.signatures:
        raise validation.invalid(f"No signature was found with the name: {key}")
    return key, definition


def check_classification(definition):
    """TF Serving's PreProcessClassification checks: one input ``inputs``, outputs ``classes`` and/or ``scores``."""
    if len(definition.inputs) != 1:
        raise validation.invalid("Expected one input Tensor.")
    if len(definition.outputs) not in (1, 2):
        raise validation.invalid(f"Expected one or two output Tensors, found {len(definition.outputs)}")
    if "inputs" not in definition.inputs:
        raise validation.invalid(f"No classification inputs found in SignatureDef: {_debug_string(definition)}")
    if "classes" not in definition.outputs and "scores" not in definition.outputs:
        raise validation.invalid(
            'Expected classification signature outputs to contain at least one of "classes" or "scores". '
            f"Signature was: {_debug_string(definition)}"
        )


def check_regression(definition):
    """TF Serving's PreProcessRegression checks: one input ``inputs``, one output ``outputs``."""
    if len(definition.inputs) != 1:
        raise validation.invalid("Expected one input Tensor.")
    if len(definition.outputs) != 1:
        raise validation.invalid("Expected one output Tensor.")
    if "inputs" not in definition.inputs:
        raise validation.invalid(f"No regression inputs found in SignatureDef: {_debug_string(definition)}")
    if "outputs" not in definition.outputs:
        raise validation.invalid(f"No regression outputs found in SignatureDef: {_debug_string(definition)}")


def serialized_examples(input_proto):
    """The [batch] string array TF Serving feeds: each Example, after the context's bytes when there is one."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        examples = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        context = input_proto.example_list_with_context.context.SerializeToString()
        # Concatenated messages parse as one, later fields winning: the Example's features override the context's.
        examples = [context + e.SerializeToString() for e in input_proto.example_list_with_context.examples]
    else:
        examples = []
    if not examples:
        raise validation.invalid("Input is empty.")
    array = np.empty(len(examples), dtype=object)
    array[:] = examples
    return array


def _run(servable, key, examples):
    function = servable.signatures[key][0]
    try:
        return {k: np.asarray(v) for k, v in function(inputs=examples).items()}
    except tf.errors.OpError as error:
        raise validation.from_tensorflow(error) from None


def _shape(array):
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _type_name(array):
    """TensorFlow's DataType_Name: DT_FLOAT, DT_STRING..."""
    dtype = tf.string if array.dtype.kind in "OSU" else tf.as_dtype(array.dtype)
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def classification_result(outputs, count, result):
    """Fills a ClassificationResult from the ``classes``/``scores`` outputs, with TF Serving's checks."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, array, want in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if array is None:
            continue
        if array.ndim != 2:
            raise validation.invalid(f"Expected Tensor shape: [batch_size num_classes] but got {_shape(array)}")
        if _type_name(array) != want:
            raise validation.invalid(f"Expected {name} Tensor of {want}. Got: {_type_name(array)}")
        if array.shape[0] != count:
            raise validation.invalid(f"Expected {name} output batch size of {count}. Got: {array.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise validation.invalid(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    width = (classes if classes is not None else scores).shape[1]
    for row in range(count):
        classifications = result.classifications.add()
        for column in range(width):
            entry = classifications.classes.add()
            if classes is not None:
                label = classes[row, column]
                entry.label = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            if scores is not None:
                entry.score = float(scores[row, column])


def regression_result(outputs, count, result):
    """Fills a RegressionResult from the ``outputs`` output, with TF Serving's checks."""
    values = outputs["outputs"]
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise validation.invalid(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape(values)}"
        )
    if values.shape[0] != count:
        raise validation.invalid(f"Input batch size did not match output batch size: {count} vs. {values.shape[0]}")
    if _type_name(values) != "DT_FLOAT":
        raise validation.invalid(f"Expected output Tensor of DT_FLOAT.  Got: {_type_name(values)}")
    for value in values.ravel():
        result.regressions.add().value = float(value)


def _model_spec(target, name, signature_name, version):
    target.name = name
    target.signature_name = signature_name or "serving_default"
    target.version.value = version


def classify(servable, request):
    return _single(servable, request, check_classification, classification_pb2.ClassificationResponse,
                   classification_result)


def regress(servable, request):
    return _single(servable, request, check_regression, regression_pb2.RegressionResponse, regression_result)


def _single(servable, request, check, response_type, fill):
    """A Classify or Regress call: one signature of that method, run on the request's examples."""
    key, definition = _definition(servable, request.model_spec.signature_name)
    check(definition)
    response = response_type()
    _model_spec(response.model_spec, request.model_spec.name, key, servable.version)
    examples = serialized_examples(request.input)
    fill(_run(servable, key, examples), len(examples), response.result)
    return response


def multi_inference(servable, request):
    """TF Serving's TensorFlowMultiInferenceRunner: every task on one model, each signature once."""
    name, keys = "", []
    for task in request.tasks:
        if not task.model_spec.name:
            raise validation.invalid("Found ModelSpec with an empty model name.")
        if name and task.model_spec.name != name:
            raise validation.invalid("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        name = task.model_spec.name
        key = task.model_spec.signature_name or "serving_default"
        if key in keys:
            raise validation.invalid(f"Duplicate evaluation of signature: {key}")
        keys.append(key)
        definition = servable.signature_defs.get(key)
        if definition is None or key not in servable.signatures:
            raise validation.invalid(f"Requested signature not found in model graph: {key}")
        if task.method_name == CLASSIFY:
            check_classification(definition)
        elif task.method_name == REGRESS:
            check_regression(definition)
        else:
            raise validation.RequestError(
                grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}"
            )
    examples = serialized_examples(request.input)
    response = inference_pb2.MultiInferenceResponse()
    for task, key in zip(request.tasks, keys):
        outputs = _run(servable, key, examples)
        result = response.results.add()
        if task.method_name == CLASSIFY:
            classification_result(outputs, len(examples), result.classification_result)
        else:
            regression_result(outputs, len(examples), result.regression_result)
        _model_spec(result.model_spec, task.model_spec.name, key, servable.version)
    return response
