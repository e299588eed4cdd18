"""TF Serving's own test cases replayed on its test models, over gRPC.

Written from tensorflow/serving's tensorflow_model_server_test.py,
predict_impl_test.cc, classifier/regressor/multi_inference tests and
get_model_status_impl_test.cc: the same requests on the same models
(``../shared/data/tf_serving_testdata``), asserting the values, codes and
words TF Serving answers with.
"""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import SHARED_DATA
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

TESTDATA = SHARED_DATA / "tf_serving_testdata"
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
HALF_PLUS_TWO = ["saved_model_half_plus_two_cpu", "saved_model_half_plus_two_tf2_cpu", "saved_model_half_plus_two_mkl",
                 "saved_model_half_plus_two_gpu", "saved_model_half_plus_two_mlmd",
                 "saved_model_half_plus_two_cpu_with_saved_model_config"]


def _model(name, folder, **kwargs):
    return ModelVersions(name, str(TESTDATA / folder), **kwargs)


@pytest.fixture(scope="module")
def tf_serving():
    """One server with the models TF Serving's tests start, gRPC stubs on it."""
    models = [
        _model("default", "saved_model_half_plus_two_cpu"),
        _model("tf2", "saved_model_half_plus_two_tf2_cpu"),
        _model("half_plus_three", "saved_model_half_plus_three"),
        _model("counter", "saved_model_counter"),
        _model("two", "saved_model_half_plus_two_2_versions", policy="all", labels={"stable": 123, "canary": 124}),
        *[_model(folder, folder) for folder in HALF_PLUS_TWO[2:]],
    ]
    server = Server(models, port=0, poll_seconds=60).start()
    channel = grpc.insecure_channel(f"localhost:{server.port}")
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()
    server.stop(grace=1)


def predict_request(model="default", value=(2.0,), shape=(1,), signature="", alias="x", output_filter=()):
    """VerifyPredictRequest's request: x in float_val, with the shape TF Serving's harness sends."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    tensor = request.inputs[alias]
    tensor.dtype = types_pb2.DT_FLOAT
    tensor.float_val.extend(value)
    for size in shape:
        tensor.tensor_shape.dim.add().size = size
    request.output_filter.extend(output_filter)
    return request


def refused(call, code, message=None):
    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == code, error.value.details()
    if message is not None:
        assert error.value.details() == message
    return error.value.details()


def examples_input(target, x=2.0):
    example = target.example_list.examples.add()
    example.features.feature["x"].float_list.value.append(x)


@pytest.mark.parametrize("model", ["default", "tf2", *HALF_PLUS_TWO[2:]])
@pytest.mark.parametrize("output_filter", [(), ("y",)])
def test_predict_answers_in_float_val(tf_serving, model, output_filter):
    """VerifyPredictRequest: x=2 as float_val of shape [1] against a declared [-1, 1] -> y.float_val == [3.0]."""
    stub, _ = tf_serving
    result = stub.Predict(predict_request(model, output_filter=output_filter), 5)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [3.0]
    assert not result.outputs["y"].tensor_content
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == (
        model, "serving_default", 123)


def test_predict_half_plus_three_and_shapes_tensorflow_accepts(tf_serving):
    stub, _ = tf_serving
    assert list(stub.Predict(predict_request("half_plus_three"), 5).outputs["y"].float_val) == [4.0]
    # predict_impl_test PredictionSuccess: a scalar (no shape) gives a scalar.
    scalar = stub.Predict(predict_request(shape=()), 5).outputs["y"]
    assert list(scalar.float_val) == [3.0] and len(scalar.tensor_shape.dim) == 0
    # docker.md's quick start: [1, 2, 5] of shape [3] -> [2.5, 3, 4.5].
    column = stub.Predict(predict_request(value=(1.0, 2.0, 5.0), shape=(3,)), 5).outputs["y"]
    assert list(column.float_val) == [2.5, 3.0, 4.5] and [d.size for d in column.tensor_shape.dim] == [3]
    batch = stub.Predict(predict_request("tf2", value=(1.0, 2.0, 5.0), shape=(3, 1)), 5).outputs["y"]
    assert list(batch.float_val) == [2.5, 3.0, 4.5]


def test_predict_named_regression_and_classification_signatures(tf_serving):
    """PredictionWithNamedRegressionSignature / ...ClassificationSignature: x2=2 -> 4."""
    stub, _ = tf_serving
    regress = stub.Predict(predict_request(signature="regress_x2_to_y3", alias="inputs", shape=()), 5)
    assert list(regress.outputs["outputs"].float_val) == [4.0]
    assert regress.model_spec.signature_name == "regress_x2_to_y3"
    classify = stub.Predict(predict_request("two", signature="classify_x2_to_y3", alias="inputs", shape=()), 5)
    assert list(classify.outputs["scores"].float_val) == [4.0]


def test_predict_counter_with_ref_variables(tf_serving):
    """PredictionWithCustomizedSignatures on saved_model_counter (TF1 ref variables, no inputs)."""
    stub, _ = tf_serving

    def call(signature, **inputs):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "counter"
        request.model_spec.signature_name = signature
        for name, value in inputs.items():
            request.inputs[name].dtype = types_pb2.DT_FLOAT
            request.inputs[name].float_val.append(value)
        return list(stub.Predict(request, 5).outputs["output"].float_val)

    assert call("reset_counter") == [0.0]
    assert call("get_counter") == [0.0]
    assert call("incr_counter") == [1.0]
    assert call("reset_counter") == [0.0]
    assert call("incr_counter") == [1.0]
    assert call("incr_counter_by", delta=3.0) == [4.0]


def test_predict_errors_of_predict_impl_test(tf_serving):
    stub, _ = tf_serving
    wrong_key = predict_request()
    del wrong_key.inputs["x"]
    wrong_key.inputs["key"].dtype = types_pb2.DT_STRING
    wrong_key.inputs["key"].string_val.append(b"any_key")
    refused(lambda: stub.Predict(wrong_key), INVALID,
            "input tensor alias not found in signature: key. Inputs expected to be in the set {x}.")
    refused(lambda: stub.Predict(predict_request(output_filter=["output_filter"])), INVALID,
            "output tensor alias not found in signature: output_filter Outputs expected to be in the set {y}.")
    refused(lambda: stub.Predict(predict_request(output_filter=["y", "y"])), INVALID,
            "duplicate output tensor alias: y")
    wrong_type = predict_request()
    wrong_type.inputs["x"].Clear()
    wrong_type.inputs["x"].dtype = types_pb2.DT_STRING
    wrong_type.inputs["x"].string_val.append(b"any_key")
    wrong_type.inputs["x"].tensor_shape.dim.add().size = 1
    refused(lambda: stub.Predict(wrong_type), INVALID, "Expects arg[0] to be float but string is provided")
    refused(lambda: stub.Predict(predict_request("nonexistent_model")), NOT_FOUND,
            "Servable not found for request: Latest(nonexistent_model)")
    refused(lambda: stub.Predict(predict_request(signature="nope")), grpc.StatusCode.FAILED_PRECONDITION,
            'Serving signature key "nope" not found.')
    short = predict_request(value=(1.0, 2.0, 3.0), shape=(2,))
    refused(lambda: stub.Predict(short), INVALID, "tensor parsing error: x")
    assert list(stub.Predict(predict_request(), 5).outputs["y"].float_val) == [3.0]  # still answering


def test_version_by_number_and_label(tf_serving):
    stub, model_service = tf_serving
    for spec, version in (({"version": 123}, 123), ({"version": 124}, 124), ({"label": "stable"}, 123),
                          ({"label": "canary"}, 124), ({}, 124)):
        request = predict_request("two")
        if "version" in spec:
            request.model_spec.version.value = spec["version"]
        if "label" in spec:
            request.model_spec.version_label = spec["label"]
        result = stub.Predict(request, 5)
        assert result.model_spec.version.value == version and list(result.outputs["y"].float_val) == [3.0]
    unknown = predict_request("two")
    unknown.model_spec.version_label = "beta"
    refused(lambda: stub.Predict(unknown), INVALID, "Unrecognized servable version label: beta")
    missing = predict_request("two")
    missing.model_spec.version.value = 125
    refused(lambda: stub.Predict(missing), NOT_FOUND, "Servable not found for request: Specific(two, 125)")


def test_get_model_status(tf_serving):
    """testGetModelStatus and get_model_status_impl_test.cc."""
    _, model_service = tf_serving
    refused(lambda: model_service.GetModelStatus(get_model_status_pb2.GetModelStatusRequest()), INVALID,
            "Missing ModelSpec")  # MissingOrEmptyModelSpecFailure
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    result = model_service.GetModelStatus(request, 5)
    assert len(result.model_version_status) == 1
    status = result.model_version_status[0]
    assert (status.version, status.state, status.status.error_code) == (123, 30, 0)
    request.model_spec.name = "two"
    assert [s.version for s in model_service.GetModelStatus(request, 5).model_version_status] == [123, 124]
    request.model_spec.version.value = 124
    assert [s.version for s in model_service.GetModelStatus(request, 5).model_version_status] == [124]
    request.model_spec.version.value = 99
    refused(lambda: model_service.GetModelStatus(request), NOT_FOUND, "Could not find version 99 of model two")
    request.model_spec.name = "none"
    request.model_spec.ClearField("version")
    refused(lambda: model_service.GetModelStatus(request), NOT_FOUND, "Could not find any versions of model none")


def test_get_model_metadata(tf_serving):
    """testGetModelMetadata: every SignatureDef of the MetaGraph, packed in an Any."""
    stub, _ = tf_serving
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = stub.GetModelMetadata(request, 5)
    assert result.model_spec.name == "default" and result.model_spec.version.value == 123
    assert len(result.metadata) == 1 and "signature_def" in result.metadata
    signatures = get_model_metadata_pb2.SignatureDefMap()
    result.metadata["signature_def"].Unpack(signatures)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((TESTDATA / "saved_model_half_plus_two_cpu/00000123/saved_model.pb").read_bytes())
    assert dict(signatures.signature_def) == dict(proto.meta_graphs[0].signature_def)


@pytest.mark.parametrize("model", ["default", "tf2"])
def test_classify(tf_serving, model):
    """testClassify / testClassifyTf2: x=2 through classify_x_to_y -> one class, score 3.0."""
    stub, _ = tf_serving
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "classify_x_to_y"
    examples_input(request.input)
    result = stub.Classify(request, 5)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == (
        model, "classify_x_to_y", 123)


@pytest.mark.parametrize("model", ["default", "tf2"])
def test_regress(tf_serving, model):
    """testRegress / testRegressTf2: x=2 through regress_x_to_y -> 3.0; regress_x_to_y2 -> 0.5 x + 3."""
    stub, _ = tf_serving
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "regress_x_to_y"
    examples_input(request.input)
    examples_input(request.input, 4.0)
    result = stub.Regress(request, 5)
    assert [r.value for r in result.result.regressions] == [3.0, 4.0]
    assert (result.model_spec.name, result.model_spec.signature_name, result.model_spec.version.value) == (
        model, "regress_x_to_y", 123)
    request.model_spec.signature_name = "regress_x_to_y2"
    assert [r.value for r in stub.Regress(request, 5).result.regressions] == [4.0, 5.0]


def test_regress_with_context(tf_serving):
    """example_list_with_context: the context's features join each example's."""
    stub, _ = tf_serving
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    context = request.input.example_list_with_context
    context.context.features.feature["x"].float_list.value.append(10.0)
    context.examples.add().features.feature["x"].float_list.value.append(2.0)
    context.examples.add().features.feature["other"].float_list.value.append(1.0)
    assert [r.value for r in stub.Regress(request, 5).result.regressions] == [3.0, 7.0]


@pytest.mark.parametrize("model", ["default", "tf2"])
def test_multi_inference(tf_serving, model):
    """testMultiInference / testMultiInferenceTf2."""
    stub, _ = tf_serving
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "tensorflow/serving/regress"),
                              ("classify_x_to_y", "tensorflow/serving/classify")):
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method
    examples_input(request.input)
    result = stub.MultiInference(request, 5)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for task, answer in zip(request.tasks, result.results):
        assert (answer.model_spec.name, answer.model_spec.signature_name, answer.model_spec.version.value) == (
            model, task.model_spec.signature_name, 123)


def test_classify_regress_and_multi_inference_errors(tf_serving):
    """classifier.cc, regressor.cc, util.cc and multi_inference.cc's codes and words."""
    stub, _ = tf_serving
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = "default"
    classify.model_spec.signature_name = "classify_x_to_y"
    refused(lambda: stub.Classify(classify), INVALID, "Input is empty.")
    examples_input(classify.input)
    classify.model_spec.signature_name = "nope"
    refused(lambda: stub.Classify(classify), INVALID, "No signature was found with the name: nope")
    classify.model_spec.signature_name = ""  # serving_default is a predict signature with input x
    assert refused(lambda: stub.Classify(classify), INVALID).startswith(
        "No classification inputs found in SignatureDef: ")
    classify.model_spec.signature_name = "regress_x_to_y"
    assert refused(lambda: stub.Classify(classify), INVALID).startswith(
        'Expected classification signature outputs to contain at least one of "classes" or "scores". ')
    classify.model_spec.name = "ghost"
    refused(lambda: stub.Classify(classify), NOT_FOUND, "Servable not found for request: Latest(ghost)")
    refused(lambda: stub.Classify(classification_pb2.ClassificationRequest()), INVALID, "Missing ModelSpec")
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "default"
    regress.model_spec.signature_name = "classify_x_to_y"
    examples_input(regress.input)
    assert refused(lambda: stub.Regress(regress), INVALID).startswith("No regression outputs found in SignatureDef: ")
    regress.model_spec.signature_name = ""
    assert refused(lambda: stub.Regress(regress), INVALID).startswith("No regression inputs found in SignatureDef: ")
    multi = inference_pb2.MultiInferenceRequest()
    examples_input(multi.input)
    for name, signature, method in (("default", "regress_x_to_y", "tensorflow/serving/regress"),
                                    ("tf2", "regress_x_to_y2", "tensorflow/serving/regress")):
        task = multi.tasks.add()
        task.model_spec.name, task.model_spec.signature_name, task.method_name = name, signature, method
    refused(lambda: stub.MultiInference(multi), INVALID,
            "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
    multi.tasks[1].model_spec.name = "default"
    multi.tasks[1].model_spec.signature_name = "regress_x_to_y"
    refused(lambda: stub.MultiInference(multi), INVALID, "Duplicate evaluation of signature: regress_x_to_y")
    multi.tasks[1].model_spec.signature_name = "missing"
    refused(lambda: stub.MultiInference(multi), INVALID, "Requested signature not found in model graph: missing")
    multi.tasks[1].model_spec.signature_name = "classify_x_to_y"
    multi.tasks[1].method_name = "tensorflow/serving/predict"
    refused(lambda: stub.MultiInference(multi), grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict")
    bad_feature = regression_pb2.RegressionRequest()
    bad_feature.model_spec.name = "default"
    bad_feature.model_spec.signature_name = "regress_x_to_y"
    bad_feature.input.example_list.examples.add().features.feature["x"].bytes_list.value.append(b"two")
    refused(lambda: stub.Regress(bad_feature), INVALID)  # TensorFlow's ParseExample refuses the type


def test_half_plus_three_loads_where_tf_saved_model_load_fails():
    """saved_model_half_plus_three: tf.saved_model.load refuses it, TF Serving (and this server) load it."""
    path = str(TESTDATA / "saved_model_half_plus_three/00000123")
    with pytest.raises(Exception):
        tf.saved_model.load(path)
    from mtl_keras.serving.servables import Servable

    servable = Servable(123, path)
    np.testing.assert_allclose(servable.signatures["serving_default"].function(x=np.float32([[2.0]]))["y"], [[4.0]])


def test_warm_up_replays_classify_and_regress_records(tmp_path):
    """saved_model_warmup_util.cc replays every logged kind: a version warmed with Classify and Regress
    records loads and serves."""
    import shutil

    from tensorflow_serving.apis import prediction_log_pb2

    from mtl_keras.serving.servables import WARMUP_FILE, Servable

    path = tmp_path / "123"
    shutil.copytree(TESTDATA / "saved_model_half_plus_two_cpu/00000123", path)
    (path / "assets.extra").mkdir()
    with tf.io.TFRecordWriter(str(path / WARMUP_FILE)) as writer:
        classify = prediction_log_pb2.PredictionLog()
        classify.classify_log.request.model_spec.signature_name = "classify_x_to_y"
        examples_input(classify.classify_log.request.input)
        regress = prediction_log_pb2.PredictionLog()
        regress.regress_log.request.model_spec.signature_name = "regress_x_to_y"
        examples_input(regress.regress_log.request.input)
        for log in (classify, regress):
            writer.write(log.SerializeToString())
    servable = Servable(123, str(path))
    np.testing.assert_allclose(servable.signatures["serving_default"].function(x=np.float32([[2.0]]))["y"], [[3.0]])
