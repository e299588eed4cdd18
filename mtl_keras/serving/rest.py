"""TF Serving's REST API on the same servables and checks as the gRPC server.

POST /v1/models/<name>[/versions/<n>|/labels/<l>]:predict with
{"signature_name"?, "instances": [...]} (row format) or {"inputs": ...}
(columnar), never both; GET /v1/models/<name>[/versions/<n>] (status) and
.../metadata. Errors are {"error": message} with TF Serving's HTTP codes.
"""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from mtl_keras.serving import validation
from mtl_keras.serving.tensors import fill, to_array

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>:predict|/metadata)?$"
)
_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 400,
}

def _rows_to_columns(instances, names):
    if not isinstance(instances, list):
        raise validation.invalid("'instances' must be a list")
    if len(names) == 1 and not (instances and isinstance(instances[0], dict)):
        return {names[0]: instances}
    columns = {}
    for row in instances:
        if not isinstance(row, dict):
            raise validation.invalid("each of 'instances' must be an object of named inputs")
        for key, value in row.items():
            columns.setdefault(key, []).append(value)
    return columns

def predict_request(body, name, version, label, specs_of):
    """A PredictRequest from a REST body; ``specs_of(signature)`` gives the input specs."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        raise validation.invalid("JSON body must have exactly one of 'instances' or 'inputs'")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = int(version)
    if label is not None:
        request.model_spec.version_label = label
    signature = body.get("signature_name", "")
    request.model_spec.signature_name = signature
    specs = specs_of(signature)
    if not specs:
        return request, "instances" in body  # the model or signature check will answer
    names = sorted(specs)
    if "instances" in body:
        columns = _rows_to_columns(body["instances"], names)
    else:
        inputs = body["inputs"]
        columns = inputs if isinstance(inputs, dict) else {names[0]: inputs}
    for key, value in columns.items():
        dtype = specs[key].dtype.as_numpy_dtype if key in specs else None
        try:
            array = np.asarray(value, dtype=dtype)
        except (TypeError, ValueError):
            raise validation.invalid(f"tensor parsing error: {key}") from None
        fill(request.inputs[key], array)
    return request, "instances" in body

def predict_body(response, row_format):
    outputs = {k: to_array(v).tolist() for k, v in response.outputs.items()}
    if row_format:
        rows = len(next(iter(outputs.values()))) if outputs else 0
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(rows)]}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values()))}
    return {"outputs": outputs}

class RestServer:
    """A threaded HTTP server answering TF Serving's REST API."""

    def __init__(self, prediction_service, model_service, port):
        self.prediction, self.status = prediction_service, model_service
        handler = self._handler()
        self.http = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self.http.server_address[1]
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.http.shutdown()
        self.http.server_close()

    def _handler(server):  # noqa: N805 - the handler class closes over the server
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self):
                match = _PATH.match(self.path)
                if not match:
                    raise validation.RequestError(grpc.StatusCode.NOT_FOUND, f"Malformed request: {self.path}")
                return match

            def _run(self, work):
                try:
                    self._reply(200, work(self._route()))
                except validation.RequestError as error:
                    self._reply(_HTTP.get(error.code, 500), {"error": error.message})
                except Exception as error:  # a request must never take the server down
                    self._reply(500, {"error": f"{type(error).__name__}: {error}"})

            def do_POST(self):
                def work(match):
                    if match["action"] != ":predict":
                        raise validation.RequestError(grpc.StatusCode.NOT_FOUND, f"Malformed request: POST {self.path}")
                    length = int(self.headers.get("Content-Length", 0))
                    try:
                        body = json.loads(self.rfile.read(length) or b"null")
                    except json.JSONDecodeError as error:
                        raise validation.invalid(f"JSON Parse error: {error}") from None
                    version = match["version"]
                    request, rows = predict_request(
                        body, match["name"], version, match["label"],
                        lambda sig: server.prediction.input_specs(match["name"], version, sig),
                    )
                    return predict_body(server.prediction.predict(request), rows)

                self._run(work)

            def do_GET(self):
                def work(match):
                    if match["action"] == "/metadata":
                        request = get_model_metadata_pb2.GetModelMetadataRequest()
                        request.model_spec.name = match["name"]
                        if match["version"]:
                            request.model_spec.version.value = int(match["version"])
                        request.metadata_field.append("signature_def")
                        response = server.prediction.metadata(request)
                        return json_format.MessageToDict(response, preserving_proto_field_name=True)
                    version = int(match["version"]) if match["version"] else None
                    status = server.status.status(match["name"], version)
                    return json_format.MessageToDict(status, preserving_proto_field_name=True)

                self._run(work)

        return Handler
