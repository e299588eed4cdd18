"""TF Serving's REST API on the same services as the gRPC server (http_rest_api_handler.cc).

POST /v1/models/<name>[/versions/<n>|/labels/<l>]:(predict|classify|regress),
GET /v1/models/<name>[/versions/<n>|/labels/<l>][/metadata]. A /v1/ path
that matches neither is INVALID_ARGUMENT "Malformed request" (HTTP 400), as in
TF Serving; other paths are 404. Errors are ``{"error": message}`` with TF
Serving's HTTP code for the status; the Prometheus page is served at the
monitoring path when metrics are on.
"""

import json
import re
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    predict_pb2,
    regression_pb2,
)

from mtl_keras.serving import json_examples, json_tensors, json_values, validation
from mtl_keras.serving.services import answer

_POST = re.compile(r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I)
_GET = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
_V1 = re.compile(r"/v1/.*", re.I | re.S)
_HTTP = {  # http_server.cc's ToHTTPStatusCode
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}
_PRINT = dict(preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _route(method, path):
    """(model name, version, label, action) of a /v1/ path; RequestError as TF Serving's ParseModelInfo."""
    malformed = validation.invalid(f"Malformed request: {method} {path}")
    pattern = _POST if method == "POST" else _GET if method == "GET" else None
    match = pattern.fullmatch(path) if pattern else None
    if match is None:
        raise malformed
    name, version, label, action = match.groups()
    name = urllib.parse.unquote(name) if name else ""
    if version is not None:
        number = int(version)
        if number >= 2**63:
            raise validation.invalid(f"Failed to convert version: {version} to numeric.")
        version = number
    label = urllib.parse.unquote(label) if label else None
    if method == "POST" and action not in ("classify", "regress", "predict"):
        raise malformed  # the path matched case-insensitively; the method name must be lower case
    return name, version, label, (action or "")


def _spec(request, name, version, label):
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    return request


class RestApi:
    """Turns (method, path, body) into (HTTP code, JSON text) through the gRPC services' methods."""

    def __init__(self, prediction, model_service, metrics=None, metrics_path=None):
        self.prediction, self.model_service = prediction, model_service
        self.metrics, self.metrics_path = metrics, metrics_path

    def handle(self, method, path, body):
        path = urllib.parse.urlsplit(path).path
        if self.metrics is not None and path == self.metrics_path:
            return 200, self.metrics.prometheus(), "text/plain"
        if not _V1.fullmatch(path):
            return 404, "", "text/html"
        start, name, action = time.perf_counter(), "", ""
        try:
            name, version, label, action = _route(method, path)
            if method == "POST":
                text = getattr(self, "_" + action)(name, version, label, body)
            elif action == "metadata":
                text = self._metadata(name, version, label)
            else:
                text = self._status(name, version, label)
            code, status = 200, "OK"
        except validation.RequestError as error:
            code, status, text = _HTTP.get(error.code.name, 500), error.code.name, json.dumps({"error": error.message})
        except Exception as error:  # a request must never take the server down
            code, status = 500, "INTERNAL"
            text = json.dumps({"error": f"{type(error).__name__}: {error}"})
        if self.metrics is not None:
            self.metrics.record(name, action, "REST", status, time.perf_counter() - start)
        return code, text, "application/json"

    def _call(self, method, request):
        return answer(self.prediction, None, "REST", method, request)

    def _predict(self, name, version, label, body):
        document = json_values.parse(body)
        signature = json_values.signature_name(document)
        request = _spec(predict_pb2.PredictRequest(), name, version, label)
        request.model_spec.signature_name = signature
        servable = self.prediction.models.servable(*self.prediction.models.model_spec(request))
        key = signature or "serving_default"
        if key not in servable.signatures:
            raise validation.invalid(f'Serving signature name: "{key}" not found in signature def')
        arrays, rows = json_tensors.predict_inputs(document, servable.signatures[key][1], signature)
        json_tensors.fill_request(request, arrays)
        response = self._call(type(self.prediction).predict, request)
        return json_tensors.predict_response(response.outputs, rows)

    def _examples(self, request, body):
        document = json_values.parse(body)
        request.model_spec.signature_name = json_values.signature_name(document)
        json_examples.fill_examples(document, request)
        return request

    def _classify(self, name, version, label, body):
        request = self._examples(_spec(classification_pb2.ClassificationRequest(), name, version, label), body)
        return json_examples.classify_response(self._call(type(self.prediction).classify, request).result)

    def _regress(self, name, version, label, body):
        request = self._examples(_spec(regression_pb2.RegressionRequest(), name, version, label), body)
        return json_examples.regress_response(self._call(type(self.prediction).regress, request).result)

    def _status(self, name, version, label):
        if not name:
            raise validation.invalid("Missing model name in request.")
        request = _spec(get_model_status_pb2.GetModelStatusRequest(), name, version, label)
        response = self.model_service.status_of(request)
        return json.dumps(json_format.MessageToDict(response, **_PRINT), indent=1)

    def _metadata(self, name, version, label):
        if not name:
            raise validation.invalid("Missing model name in request.")
        request = _spec(get_model_metadata_pb2.GetModelMetadataRequest(), name, version, label)
        request.metadata_field.append("signature_def")
        response = self._call(type(self.prediction).metadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        # As TF Serving prints it: the Any unpacked, without an "@type" key.
        body = {
            "model_spec": json_format.MessageToDict(response.model_spec, **_PRINT),
            "metadata": {"signature_def": json_format.MessageToDict(signatures, **_PRINT)},
        }
        return json.dumps(body, indent=1)


class RestServer:
    """A threaded HTTP server answering TF Serving's REST API on 127.0.0.1 (or ``host``)."""

    def __init__(self, prediction_service, model_service, port, metrics=None, metrics_path=None,
                 timeout_ms=None, host="127.0.0.1"):
        api = RestApi(prediction_service, model_service, metrics, metrics_path)
        self.http = ThreadingHTTPServer((host, port), _handler(api, timeout_ms))
        self.http.daemon_threads = True
        self.port = self.http.server_address[1]
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.http.shutdown()
        self.http.server_close()


def _handler(api, timeout_ms):
    class Handler(BaseHTTPRequestHandler):
        # --rest_api_timeout_in_ms: a client that stalls mid-request is dropped after this long.
        timeout = timeout_ms / 1000 if timeout_ms else None
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _serve(self, method):
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:
                self._reply(400, json.dumps({"error": "Bad Content-Length"}), "application/json")
                return
            body = self.rfile.read(length) if length else b""
            self._reply(*api.handle(method, self.path, body))

        def _reply(self, code, text, content_type):
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            self._serve("POST")

        def do_GET(self):
            self._serve("GET")

        def do_PUT(self):
            self._serve("PUT")

        def do_DELETE(self):
            self._serve("DELETE")

    return Handler
