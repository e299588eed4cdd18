"""TF Serving's REST tests replayed (tensorflow_model_server_test.py, http_rest_api_handler_test.cc,
json_tensor_test.cc, api_rest.md): same requests on TF Serving's test models, same JSON, codes and words."""

import json
import re
import urllib.error
import urllib.request

import pytest
from conftest import SHARED_DATA

from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

TESTDATA = SHARED_DATA / "tf_serving_testdata"
TWO = "saved_model_half_plus_two_2_versions"


@pytest.fixture(scope="module")
def rest():
    """A server as TF Serving's REST tests start it; yields call(method, path, body) -> (HTTP code, text)."""
    models = [
        ModelVersions("default", str(TESTDATA / "saved_model_half_plus_two_cpu")),
        ModelVersions(TWO, str(TESTDATA / TWO), policy="specific", versions=[123], labels={"stable": 123}),
    ]
    server = Server(models, port=0, rest_port=0, poll_seconds=60, monitoring_path="/monitoring/prometheus/metrics",
                    rest_timeout_ms=5000).start()

    def call(method, path, body=None):
        data = body if isinstance(body, (bytes, type(None))) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        request = urllib.request.Request(f"http://127.0.0.1:{server.rest.port}{path}", data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    yield call
    server.stop(grace=1)


def ok(call, method, path, body=None):
    code, text = call(method, path, body)
    assert code == 200, text
    return json.loads(text)


def error(call, method, path, body=None):
    code, text = call(method, path, body)
    return code, json.loads(text)["error"]


def sorted_object(value):
    """tensorflow_model_server_test_base.SortedObject: JSON compared without list order."""
    if isinstance(value, dict):
        return sorted((k, sorted_object(v)) for k, v in value.items())
    if isinstance(value, list):
        return sorted(sorted_object(v) for v in value)
    return value


def test_classify_regress_predict_rest(rest):
    """testClassifyREST, testRegressREST, testPredictREST, testPredictColumnarREST."""
    assert ok(rest, "POST", "/v1/models/default:classify",
              {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}) == {"results": [[["", 3.0]]]}
    assert ok(rest, "POST", "/v1/models/default:regress",
              {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}) == {"results": [3.0]}
    assert ok(rest, "POST", "/v1/models/default:predict", {"instances": [2.0, 3.0, 4.0]}) == {
        "predictions": [3.0, 3.5, 4.0]}
    assert ok(rest, "POST", "/v1/models/default:predict", {"inputs": [2.0, 3.0, 4.0]}) == {"outputs": [3.0, 3.5, 4.0]}
    # docker.md's quick start.
    assert ok(rest, "POST", "/v1/models/default:predict", {"instances": [1.0, 2.0, 5.0]}) == {
        "predictions": [2.5, 3.0, 4.5]}


def test_handler_predict_regress_classify_by_version_and_label(rest):
    """http_rest_api_handler_test.cc: Predict, Regress, Classify by name, version and label."""
    base = f"/v1/models/{TWO}"
    assert ok(rest, "POST", f"{base}:predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]}) == {
        "predictions": [[2.5, 3.0], [3.5, 4.0]]}
    assert ok(rest, "POST", f"{base}/versions/123:predict", {"instances": [1.0, 2.0]}) == {"predictions": [2.5, 3.0]}
    assert ok(rest, "POST", f"{base}/labels/stable:predict", {"instances": [1.0, 2.0]}) == {"predictions": [2.5, 3.0]}
    assert ok(rest, "POST", f"{base}/versions/123:predict",
              {"signature_name": "serving_default", "instances": [3.0, 4.0]}) == {"predictions": [3.5, 4.0]}
    assert ok(rest, "POST", f"{base}/versions/123:predict",
              {"signature_name": "serving_default", "inputs": [3.0, 4.0]}) == {"outputs": [3.5, 4.0]}
    regress = {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]}
    for path in (f"{base}:regress", f"{base}/versions/123:regress", f"{base}/labels/stable:regress"):
        assert ok(rest, "POST", path, regress) == {"results": [42.0]}
    assert ok(rest, "POST", f"{base}:classify",
              {"signature_name": "classify_x_to_y", "examples": [{"x": 20.0}]}) == {"results": [[["", 12.0]]]}
    assert ok(rest, "POST", f"{base}/labels/stable:classify",
              {"signature_name": "classify_x_to_y", "examples": [{"x": 10.0}]}) == {"results": [[["", 7.0]]]}
    with_context = {"signature_name": "regress_x_to_y", "context": {"x": 10.0}, "examples": [{"y": 1}, {"x": 2.0}]}
    assert ok(rest, "POST", f"{base}:regress", with_context) == {"results": [7.0, 3.0]}


def test_status_rest(rest):
    """testGetStatusREST and GetStatus: fields at their defaults are printed."""
    expected = {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert ok(rest, "GET", "/v1/models/default") == expected
    assert ok(rest, "GET", f"/v1/models/{TWO}") == expected
    assert ok(rest, "GET", f"/v1/models/{TWO}/versions/123") == expected
    assert ok(rest, "GET", f"/v1/models/{TWO}/labels/stable") == expected
    assert error(rest, "GET", f"/v1/models/{TWO}/versions/124") == (404, f"Could not find version 124 of model {TWO}")


def test_metadata_rest_equals_tf_servings_json(rest):
    """testGetModelMetadataREST and GetModelMetadata, against TF Serving's testdata JSON."""
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    assert sorted_object(ok(rest, "GET", "/v1/models/default/metadata")) == sorted_object(expected)
    expected = json.loads((TESTDATA / "saved_model_half_plus_two_2_versions_metadata.json").read_text())
    assert sorted_object(ok(rest, "GET", f"/v1/models/{TWO}/metadata")) == sorted_object(expected)


def test_malformed_urls_are_invalid_argument(rest):
    """http_rest_api_handler_test.cc UnsupportedApiCalls: 400 "Malformed request" (INVALID_ARGUMENT)."""
    for method, path in (("GET", "/v1/foo"), ("POST", "/v1/foo"), ("GET", "/v1/models/debug/model_name"),
                         ("POST", "/v1/models"), ("GET", "/v1/models/foo:predict"),
                         ("GET", "/v1/models/foo/version/50:predict"), ("POST", "/v1/models/foo/version/50:regress"),
                         ("POST", "/v1/models/foo/versions/HELLO:regress"), ("POST", "/v1/models/foo/metadata"),
                         ("POST", "/v1/models/foo/label/some_label:regress"),
                         ("POST", "/v1/models/foo/versions/50/labels/some_label:regress"),
                         ("POST", "/v1/models/foo/versions/some_label:regress")):
        assert error(rest, method, path, "" if method == "POST" else None) == (
            400, f"Malformed request: {method} {path}")
    assert error(rest, "GET", "/v1/models") == (400, "Missing model name in request.")
    code, message = error(rest, "POST", "/v1/models/foo/versions/9999999999999999999999:predict", "{}")
    assert code == 400 and message.startswith("Failed to convert version")
    assert rest("GET", "/other")[0] == 404  # outside /v1/ TF Serving has no handler


def test_predict_request_errors_in_tf_servings_order(rest):
    """PredictModelNameVersionErrors and PredictRequestErrors."""
    for path in ("/v1/models/foo:predict", "/v1/models/foo/versions/50:predict", f"/v1/models/{TWO}99:predict"):
        assert error(rest, "POST", path, {"instances": [1]})[0] == 404
    path = f"/v1/models/{TWO}:predict"
    assert error(rest, "POST", path, "") == (400, "JSON Parse error: The document is empty")
    code, message = error(rest, "POST", path, "instances = [1, 2]")
    assert code == 400 and message.startswith("JSON Parse error: Invalid value")
    assert error(rest, "POST", path, {"instances": ["x", "y"]}) == (
        400, 'Failed to process element: 0 of \'instances\' list. Error: INVALID_ARGUMENT: JSON Value: "x" '
             "Type: String is not of expected type: float")
    # The label is checked before the instances are read.
    assert error(rest, "POST", f"/v1/models/{TWO}/labels/nonexistent:predict", {"instances": ["x", "y"]}) == (
        400, "Unrecognized servable version label: nonexistent")
    code, message = error(rest, "POST", path, {"signature_name": 100})
    assert code == 400 and message.endswith("'signature_name' key must be a string value.")
    assert error(rest, "POST", path, {"signature_name": "nope", "instances": [1.0]}) == (
        400, 'Serving signature name: "nope" not found in signature def')


def test_json_tensor_body_errors(rest):
    """json_tensor.cc's words for bodies that do not fit the signature."""
    path = "/v1/models/default:predict"
    assert error(rest, "POST", path, {"instances": [1.0], "inputs": [1.0]}) == (
        400, 'JSON Value: {\n    "instances": [1.0],\n    "inputs": [1.0]\n} Not formatted correctly expecting only '
             "one of 'inputs' or 'instances' keys to exist ")
    assert error(rest, "POST", path, {"instances": 1.0}) == (
        400, 'JSON Value: {\n    "instances": 1.0\n} Expecting \'instances\' to be an list/array')
    assert error(rest, "POST", path, {"instances": []}) == (
        400, 'JSON Value: {\n    "instances": []\n} No values in \'instances\' array')
    assert error(rest, "POST", path, {"foo": 1}) == (400, "Missing 'inputs' or 'instances' key")
    assert error(rest, "POST", path, "[1, 2]") == (400, "JSON Value: [1, 2] Is not object")
    assert error(rest, "POST", path, {"instances": [[1.0], [2.0, 3.0]]}) == (
        400, "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
             "Expecting tensor size: 1 but got: 2")
    assert error(rest, "POST", path, {"inputs": [[1.0], [2.0, 3.0]]}) == (
        400, "Encountered list at unexpected size: 2 at level: 1 expected size: 1")
    assert error(rest, "POST", path, {"inputs": [[1.0], 2.0]}) == (
        400, "JSON Value: 2.0 found at incorrect level: 2 in the JSON DOM. Expected at level: 2")
    assert error(rest, "POST", path, {"inputs": {"y": [1.0]}}) == (400, "Missing named input: x in 'inputs' object.")
    assert error(rest, "POST", path, {"instances": [{"y": 1.0}]}) == (
        400, "Failed to process element: 0 key: y of 'instances' list. Error: INVALID_ARGUMENT: "
             "JSON object: does not have named input: y")
    classify = "/v1/models/default:classify"
    assert error(rest, "POST", classify, {"signature_name": "classify_x_to_y"}) == (
        400, 'JSON Value: {\n    "signature_name": "classify_x_to_y"\n} When method is classify, key \'examples\' '
             "is expected and was not found")
    assert error(rest, "POST", classify, {"examples": []}) == (
        400, 'JSON Value: {\n    "examples": []\n} \'examples\' value is an empty array')
    assert error(rest, "POST", classify, {"examples": [1]}) == (400, "Example must be JSON object but got JSON Number")
    assert error(rest, "POST", classify, {"examples": [{"x": [1, 2.0]}]}) == (
        400, "Unexpected element type in feature: x expecting type: int64")
    assert error(rest, "POST", classify, {"examples": [{"x": None}]}) == (
        400, "Feature: x has element with unexpected JSON type: Null")


def test_floats_print_as_tf_serving_writes_them(rest):
    """WriteDecimal: shortest form that reads back as the float32, NaN and Infinity spelled out."""
    code, text = rest("POST", "/v1/models/default:predict", '{"instances": [0.2, NaN, Infinity]}')
    assert code == 200 and text.replace(" ", "") == '{"predictions":[2.1,NaN,Infinity]}'


def test_prometheus_endpoint(rest):
    """testPrometheusEndpoint: TF Serving's metric names, counted by model and status."""
    ok(rest, "POST", "/v1/models/default:predict", {"instances": [1.0]})
    code, text = rest("GET", "/monitoring/prometheus/metrics")
    assert code == 200 and "# TYPE" in text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="default",status="OK"}' in text
    assert '# TYPE :tensorflow:serving:request_latency histogram' in text
    assert ':tensorflow:serving:request_latency_bucket{model_name="default",API="predict",entrypoint="REST",le="+Inf"}' in text
    # The model call alone, as predict_util.cc's RecordRuntimeLatency (API "Predict", runtime "TF1").
    assert '# TYPE :tensorflow:serving:runtime_latency histogram' in text
    runtime = re.search(r':tensorflow:serving:runtime_latency_count\{model_name="default",API="Predict",runtime="TF1"\} (\d+)', text)
    assert runtime and int(runtime.group(1)) >= 1  # the module's server has answered other tests too


def test_b64_strings_reach_a_string_signature(tmp_path):
    """api_rest.md: binary inputs as {"b64": ...}; an mtl_keras export's predict_examples takes serialized
    tf.Examples that way and answers like serving_default."""
    import base64

    import numpy as np
    import tensorflow as tf

    from mtl_keras import export, models
    from mtl_keras.backend import keras
    from mtl_keras.serving.rest import RestApi

    model = models.mmoe(keras.Input((3,), name="features"), ["ctr", "cvr"], num_experts=2)
    export.export_saved_model(model, str(tmp_path / "ranker"))
    server = Server([ModelVersions("ranker", str(tmp_path / "ranker"))], port=0)
    server.models.by_name["ranker"].poll()
    api = RestApi(server.prediction_service, server.model_service)
    x = np.float32([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]])
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "features": tf.train.Feature(float_list=tf.train.FloatList(value=row))})).SerializeToString() for row in x]
    body = {"signature_name": "predict_examples",
            "instances": [{"examples": {"b64": base64.b64encode(e).decode()}} for e in examples]}
    code, text, _ = api.handle("POST", "/v1/models/ranker:predict", json.dumps(body).encode())
    assert code == 200, text
    expected = model.predict(x, verbose=0)
    for row, answer in enumerate(json.loads(text)["predictions"]):
        np.testing.assert_allclose(answer["ctr"], expected["ctr"][row], atol=1e-5)
    code, text, _ = api.handle("POST", "/v1/models/ranker:predict",
                               json.dumps({"signature_name": "predict_examples", "inputs": {"examples": [{"b64": "%%"}]}}))
    assert (code, json.loads(text)) == (400, {"error": "Unable to base64 decode"})
    server.stop(grace=1)


def test_json_tensor_float_printing_and_zero_batches():
    """json_tensor_test.cc FromJsonSingleFloatTensorSixDigitPrecision / NonFinite / ZeroBatch / errors."""
    import numpy as np
    from tensorflow_serving.apis import predict_pb2

    from mtl_keras.serving import json_tensors
    from mtl_keras.serving.tensors import fill

    response = predict_pb2.PredictResponse()
    fill(response.outputs["float_tensor"], np.float32([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]]))
    assert json_tensors.predict_response(response.outputs, True).replace(" ", "") == (
        '{"predictions":[[9e+06,999999.0,0.5],[0.0003,3e-05,555557.5]]}')
    response = predict_pb2.PredictResponse()
    fill(response.outputs["float_tensor"], np.float32([[np.nan, np.inf], [3, -np.inf]]))
    assert json_tensors.predict_response(response.outputs, True).replace(" ", "") == (
        '{"predictions":[[NaN,Infinity],[3.0,-Infinity]]}')
    response = predict_pb2.PredictResponse()
    fill(response.outputs["a"], np.zeros((0, 2), np.float32))
    fill(response.outputs["b"], np.zeros((0,), np.int64))
    assert json.loads(json_tensors.predict_response(response.outputs, True)) == {"predictions": []}
    fill(response.outputs["c"], np.zeros((1,), np.int64))
    with pytest.raises(Exception, match="has inconsistent batch size: 1 expecting: 0"):
        json_tensors.predict_response(response.outputs, True)
    response = predict_pb2.PredictResponse()
    fill(response.outputs["s"], np.float32(1))
    with pytest.raises(Exception, match="Tensor name: s has no shape information"):
        json_tensors.predict_response(response.outputs, True)
    with pytest.raises(Exception, match="Cannot convert empty tensor map to JSON"):
        json_tensors.predict_response(predict_pb2.PredictResponse().outputs, True)
