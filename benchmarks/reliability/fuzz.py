"""Fuzzing the local server with hypothesis: requests built by mutating valid ones.

Predict and Classify over gRPC (dtypes, shapes up to 2^62 elements, alias
and model names, truncated or random ``tensor_content``, NaN/Inf, labels,
output filters, raw garbage bytes) and REST bodies and paths (JSON of any
shape, bad JSON, random bytes). Every answer must be one of TF Serving's error
codes or a correct prediction: the Keras model's own output on the same inputs,
computed in a graph as Keras's ``predict`` computes it (half_plus_two's
y = x / 2 + 2 for TF Serving's test model), not the served function's; nothing
may crash or hang (each call has a deadline), and a valid request sent last to
every server is answered OK and correctly. Loopback only; the count is bounded.

    python benchmarks/reliability/fuzz.py --requests 10000
"""

import argparse
import json
import logging
import math
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import FEATURES, TASKS, export_version, ranker, same, start_server  # noqa: E402

from mtl_keras.serving.tensors import fill_content, to_array  # noqa: E402

GRPC_ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE}
HTTP_ANSWERS = {200, 400, 404, 429, 501, 503}
DEADLINE = 10.0
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
names = st.sampled_from(["ranker", "default", "", "ghost", "x" * 300])
aliases = st.sampled_from(["features", "x", "", "inputs", "features\x00", "é"])
dims = st.lists(st.sampled_from([0, 1, 2, 3, FEATURES, 7, -1, 10**9, 2**62]), min_size=0, max_size=4)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=40,
)


@st.composite
def predict_requests(draw):
    """A valid Predict for the ranker or half_plus_two, then some of its parts replaced."""
    request = predict_pb2.PredictRequest()
    model = draw(st.sampled_from(["ranker", "default"]))
    request.model_spec.name = model
    rows = draw(st.integers(0, 5))
    alias, shape = ("features", (rows, FEATURES)) if model == "ranker" else ("x", (rows, 1))
    array = np.asarray(draw(st.lists(floats, min_size=math.prod(shape), max_size=math.prod(shape))), np.float32)
    tensor = request.inputs[alias]
    if draw(st.booleans()):
        fill_content(tensor, array.reshape(shape))
    else:  # typed field, as TF Serving's own clients write it
        tensor.dtype = types_pb2.DT_FLOAT
        tensor.float_val.extend(array.tolist())
        for size in shape:
            tensor.tensor_shape.dim.add().size = size
    mutation = draw(st.sampled_from(["none", "dtype", "dims", "content", "bytes", "alias", "name", "version",
                                     "label", "signature", "filter", "extra", "drop"]))
    if mutation == "dtype":
        tensor.dtype = draw(st.integers(0, 30))
    elif mutation == "dims":
        tensor.ClearField("tensor_shape")
        for size in draw(dims):
            tensor.tensor_shape.dim.add().size = size
    elif mutation == "content":
        tensor.tensor_content = tensor.tensor_content[: draw(st.integers(0, max(0, len(tensor.tensor_content) - 1)))]
    elif mutation == "bytes":
        tensor.tensor_content = draw(st.binary(max_size=64))
    elif mutation == "alias":
        request.inputs[draw(aliases)].CopyFrom(request.inputs.pop(alias))
    elif mutation == "name":
        request.model_spec.name = draw(names)
    elif mutation == "version":
        request.model_spec.version.value = draw(st.integers(-(2**63), 2**63 - 1))
    elif mutation == "label":
        request.model_spec.version_label = draw(st.text(max_size=10))
    elif mutation == "signature":
        request.model_spec.signature_name = draw(st.sampled_from(["ctr", "predict_examples", "regress_x_to_y", "nope"]))
    elif mutation == "filter":
        request.output_filter.extend(draw(st.lists(st.sampled_from(["ctr", "cvr", "y", "z"]), max_size=3)))
    elif mutation == "extra":
        fill_content(request.inputs[draw(aliases)], np.zeros(draw(st.integers(0, 3)), np.float32))
    elif mutation == "drop":
        request.inputs.clear()
    return request


@st.composite
def classify_requests(draw):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = draw(st.sampled_from(["default", "ranker", "ghost"]))
    request.model_spec.signature_name = draw(st.sampled_from(["classify_x_to_y", "", "regress_x_to_y", "nope"]))
    for _ in range(draw(st.integers(0, 4))):
        feature = request.input.example_list.examples.add().features.feature[draw(st.sampled_from(["x", "y", ""]))]
        kind = draw(st.sampled_from(["float", "int", "bytes", "none"]))
        if kind == "float":
            feature.float_list.value.extend(draw(st.lists(floats, max_size=3)))
        elif kind == "int":
            feature.int64_list.value.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3)))
        elif kind == "bytes":
            feature.bytes_list.value.extend(draw(st.lists(st.binary(max_size=8), max_size=3)))
    return request


@st.composite
def rest_calls(draw):
    """(method, path, body bytes) around TF Serving's REST API."""
    method = draw(st.sampled_from(["POST", "GET"]))
    path = draw(st.sampled_from([
        "/v1/models/ranker:predict", "/v1/models/default:predict", "/v1/models/default:classify",
        "/v1/models/default:regress", "/v1/models/ranker/versions/1:predict", "/v1/models/ranker/labels/x:predict",
        "/v1/models/ranker", "/v1/models/ranker/metadata", "/v1/models", "/v1/models/%zz:predict", "/v1/",
        "/v1/models/default/versions/99999999999999999999:regress"]))
    kind = draw(st.sampled_from(["valid", "json", "bytes", "truncated"]))
    valid = {"instances": np.zeros((2, FEATURES)).tolist()} if "ranker" in path else {
        "signature_name": "regress_x_to_y", "examples": [{"x": 1.0}], "instances": [1.0]}
    if kind == "valid":
        body = json.dumps(valid).encode()
    elif kind == "json":
        key = draw(st.sampled_from(["instances", "inputs", "examples", "context", "signature_name"]))
        body = json.dumps({key: draw(json_values)} if draw(st.booleans()) else draw(json_values)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    else:
        text = json.dumps(valid).encode()
        body = text[: draw(st.integers(0, len(text)))]
    return method, path, body


class Fuzzer:
    """Sends fuzzed requests to ``servers`` and records (kind, problem) for each wrong answer;
    ``model``: the Keras model the servers' "ranker" was exported from."""

    def __init__(self, servers, model):
        self.servers = servers
        # Keras's answer as TensorFlow computes it in a graph, as the server and Keras's own predict
        # do: there oneDNN fuses Dense + ReLU, and its ReLU maps NaN (from an infinite input) to 0
        # on some CPUs (an AMD EPYC with AVX-512: sigmoid(0) = 0.5 where eager Keras gives NaN).
        self.model = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec([None, FEATURES])])
        self.stubs = [prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{s.port}"))
                      for s in servers]
        self.sent, self.problems, self.codes = 0, [], {}

    def _count(self, code):
        self.sent += 1
        self.codes[code] = self.codes.get(code, 0) + 1

    def predict(self, index, request):
        server, stub = self.servers[index % len(self.servers)], self.stubs[index % len(self.stubs)]
        try:
            response = stub.Predict(request, timeout=DEADLINE)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code, response = error.code(), None
        self._count(code.name)
        if code not in GRPC_ANSWERS:
            self.problems.append(("Predict", code.name, request.model_spec.name))
        elif response is not None:
            self._check_prediction(request, response)
        return code

    def _check_prediction(self, request, response):
        """An OK answer must equal Keras's prediction on the same inputs (y = x / 2 + 2 for half_plus_two)."""
        inputs = {k: to_array(v) for k, v in request.inputs.items()}
        answer = {k: to_array(v) for k, v in response.outputs.items()}
        name, signature = response.model_spec.name, response.model_spec.signature_name or "serving_default"
        if name == "ranker" and signature in ("serving_default", *TASKS) and set(inputs) == {"features"}:
            outputs = self.model(np.asarray(inputs["features"], np.float32))
            expected = {task: np.asarray(outputs[task]) for task in TASKS}
        elif name == "default" and signature == "serving_default" and set(inputs) == {"x"}:
            expected = {"y": np.float32(0.5) * np.asarray(inputs["x"], np.float32) + np.float32(2.0)}
        else:  # no valid request reaches another signature with these inputs
            self.problems.append(("Predict", f"OK from {name}/{signature}", name))
            return
        if not answer or not set(answer) <= set(expected) or not same(answer, {k: expected[k] for k in answer}):
            self.problems.append(("Predict", "wrong answer", name))

    def classify(self, request):
        try:
            self.stubs[0].Classify(request, timeout=DEADLINE)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
        self._count(code.name)
        if code not in GRPC_ANSWERS:
            self.problems.append(("Classify", code.name, request.model_spec.name))

    def garbage(self, data):
        channel = grpc.insecure_channel(f"127.0.0.1:{self.servers[0].port}")
        call = channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            call(data, timeout=DEADLINE)
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
        channel.close()
        self._count(code.name)
        if code not in GRPC_ANSWERS | {grpc.StatusCode.INTERNAL}:  # gRPC itself answers INTERNAL for unparsable bytes
            self.problems.append(("garbage", code.name, ""))

    def rest(self, method, path, body):
        url = f"http://127.0.0.1:{self.servers[0].rest.port}{path}"
        request = urllib.request.Request(url, data=body if method == "POST" else None, method=method)
        try:
            with urllib.request.urlopen(request, timeout=DEADLINE) as answer:
                code, text = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            code, text = error.code, error.read()
        except Exception as error:  # a dropped connection or a timeout: the server failed this request
            code, text = type(error).__name__, b""
        self._count(f"HTTP {code}")
        if code not in HTTP_ANSWERS:
            self.problems.append(("REST", code, path))
        elif code != 200 and "error" not in json.loads(text or b"{}"):
            self.problems.append(("REST", "no error message", path))


def fuzz(servers, requests, model, seed=0):
    """Sends ``requests`` fuzzed requests (about half Predict, the rest Classify, REST, raw bytes);
    ``model``: the Keras model the servers' "ranker" was exported from."""
    logging.getLogger("grpc._common").setLevel(logging.CRITICAL)  # gRPC logs each garbage message it cannot parse
    fuzzer = Fuzzer(servers, model)
    share = {"predict": requests // 2, "classify": requests * 15 // 100, "garbage": max(5, min(100, requests // 20))}
    share["rest"] = max(1, requests - sum(share.values()))
    common = dict(deadline=None, database=None, derandomize=True, print_blob=False,
                  suppress_health_check=list(HealthCheck))

    @settings(max_examples=share["predict"], **common)
    @given(st.integers(0, 1), predict_requests())
    def predicts(index, request):
        fuzzer.predict(index, request)

    @settings(max_examples=share["classify"], **common)
    @given(classify_requests())
    def classifies(request):
        fuzzer.classify(request)

    @settings(max_examples=share["rest"], **common)
    @given(rest_calls())
    def rests(call):
        fuzzer.rest(*call)

    @settings(max_examples=share["garbage"], **common)
    @given(st.binary(max_size=300))
    def garbage(data):
        fuzzer.garbage(data)

    start = time.perf_counter()
    for run in (predicts, classifies, rests, garbage):
        run()
    seconds = time.perf_counter() - start
    # Afterwards a valid request to every server is answered OK, and correctly.
    valid = predict_pb2.PredictRequest()
    valid.model_spec.name = "ranker"
    fill_content(valid.inputs["features"], np.ones((3, FEATURES), np.float32))
    before = len(fuzzer.problems)
    codes = [fuzzer.predict(index, valid) for index in range(len(servers))]
    still_answering = len(fuzzer.problems) == before and all(code == grpc.StatusCode.OK for code in codes)
    return {"requests": fuzzer.sent, "seconds": round(seconds, 1), "problems": fuzzer.problems[:20],
            "failures": len(fuzzer.problems), "codes": fuzzer.codes, "valid_request_answered": still_answering}


def main(argv=None):
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10000)
    args = parser.parse_args(argv)
    base = tempfile.mkdtemp(prefix="fuzz-") + "/ranker"
    model = ranker()
    export_version(model, base)
    servers = [start_server(base), start_server(base, batching=True, rest=False)]
    try:
        print(json.dumps(fuzz(servers, args.requests, model), indent=1))
    finally:
        for server in servers:
            server.stop(grace=1)


if __name__ == "__main__":
    main()
