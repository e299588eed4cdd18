"""A local server speaking TF Serving's gRPC API (PredictionService, ModelService).

For development, tests and laptops: the same requests, status codes and
messages as ``tensorflow_model_server`` (see SERVING.md), on a thread pool.
Production runs the official server with the configuration in ``serving/``.
"""

import logging
import signal
import threading
from concurrent import futures

import grpc
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mtl_keras.serving import validation
from mtl_keras.serving.batching import Batcher
from mtl_keras.serving.rest import RestServer
from mtl_keras.serving.servables import from_config_list, from_model_config
from mtl_keras.serving.tensors import fill

log = logging.getLogger(__name__)
AVAILABLE = 30


class _Models:
    """The models being served, by name; a config reload replaces the whole map at once."""

    def __init__(self, models):
        self.by_name = {m.name: m for m in models}
        self._reload_lock = threading.Lock()

    def reload(self, models):
        """Serves ``models`` (ModelVersions) instead; the names of those left without a version.

        A model already served from the same base path keeps its loaded versions
        and takes the new policy and labels; the others load before the swap, so
        no request finds a listed model missing. Models left out stop serving.
        """
        with self._reload_lock:
            served = {}
            for model in models:
                old = self.by_name.get(model.name)
                if old is not None and old.base_path == model.base_path:
                    old.adopt(model)
                    model = old
                model.poll()
                served[model.name] = model
            self.by_name = served
            return sorted(name for name, model in served.items() if not model.loaded)

    def model_spec(self, request):
        """(name, version) after TF Serving's checks 1-3, labels resolved per model."""
        model = self.by_name.get(request.model_spec.name) if request.HasField("model_spec") else None
        return validation.model_spec(request, model.labels if model else {})

    def servable(self, name, version):
        model = self.by_name.get(name)
        servable = model.get(version) if model else None
        if servable is None:
            raise validation.not_found(name, version)
        return servable


def _grpc(method):
    """The gRPC form of a method that takes a request and raises RequestError."""

    def handler(self, request, context):
        try:
            return method(self, request)
        except validation.RequestError as error:
            context.abort(error.code, error.message)

    return handler


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models, batcher=None):
        self.models = models
        self.batcher = batcher

    def predict(self, request):
        name, version = self.models.model_spec(request)
        servable = self.models.servable(name, version)
        key = validation.signature(servable, request.model_spec.signature_name)
        function, specs, outputs = servable.signatures[key]
        arrays = validation.inputs(request, specs)
        chosen = validation.output_filter(request, outputs)
        if self.batcher is not None:
            results = self.batcher.run((name, servable.version, key), function, arrays)
        else:
            results = function(**arrays)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = key
        for alias in chosen:
            fill(response.outputs[alias], results[alias])
        return response

    def input_specs(self, name, version, signature_name):
        """{input alias: TensorSpec}, or {} when the request would fail earlier anyway."""
        try:
            servable = self.models.servable(name, int(version) if version else None)
            return servable.signatures[validation.signature(servable, signature_name)][1]
        except validation.RequestError:
            return {}

    def metadata(self, request):
        fields = list(request.metadata_field)
        if not fields:
            raise validation.invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise validation.invalid(f"Metadata field {field} is not supported")
        name, version = self.models.model_spec(request)
        servable = self.models.servable(name, version)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, definition in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(definition)
        packed = any_pb2.Any()
        packed.Pack(signature_map)
        response.metadata["signature_def"].CopyFrom(packed)
        return response

    def _unimplemented(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "Only Predict and GetModelMetadata: TF2 exports carry predict signatures only.",
        )

    Predict = _grpc(predict)
    GetModelMetadata = _grpc(metadata)
    Classify = Regress = MultiInference = _unimplemented


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, models):
        self.models = models

    def status_of(self, request):
        return self.status(*self.models.model_spec(request))

    def status(self, name, version=None):
        model = self.models.by_name.get(name)
        loaded = dict(model.loaded) if model else {}
        if version is not None:
            if version not in loaded:
                raise validation.RequestError(
                    grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}"
                )
            loaded = {version: loaded[version]}
        if not loaded:
            raise validation.RequestError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}"
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for number in sorted(loaded):
            status = response.model_version_status.add()
            status.version = number
            status.state = AVAILABLE
        return response

    def reload_config(self, request):
        """TF Serving's HandleReloadConfigRequest: the ModelConfigList replaces the served models."""
        kind = request.config.WhichOneof("config")
        if kind is None:  # TF Serving takes no action for an empty config
            return model_management_pb2.ReloadConfigResponse()
        if kind != "model_config_list":
            raise validation.invalid(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        try:
            models = from_config_list(request.config.model_config_list)
        except ValueError as error:
            raise validation.invalid(str(error)) from None
        missing = self.models.reload(models)
        if missing:
            raise validation.RequestError(
                grpc.StatusCode.UNKNOWN, f"Some models did not become available: {{{', '.join(missing)}}}"
            )
        return model_management_pb2.ReloadConfigResponse()

    GetModelStatus = _grpc(status_of)
    HandleReloadConfigRequest = _grpc(reload_config)


class Server:
    """gRPC server plus the pollers of its models' base paths."""

    def __init__(
        self, models, port, rest_port=None, poll_seconds=1.0, batching=None, max_workers=64,
        max_message_bytes=256 << 20,
    ):
        """``batching``: None, or the parameters of ``batching.parse_batching_parameters``."""
        self.batcher = Batcher(**batching) if batching else None
        self.models = _Models(models)
        self.poll_seconds = poll_seconds
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        self.grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
        self.prediction_service = PredictionService(self.models, self.batcher)
        self.model_service = ModelService(self.models)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.prediction_service, self.grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self.model_service, self.grpc)
        self.port = self.grpc.add_insecure_port(f"[::]:{port}")
        self.rest = (
            RestServer(self.prediction_service, self.model_service, rest_port) if rest_port is not None else None
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, daemon=True)

    def start(self):
        for model in self.models.by_name.values():
            model.poll()
        self.grpc.start()
        if self.rest is not None:
            self.rest.start()
        self._poller.start()
        return self

    def watch_config_file(self, path, seconds, text):
        """Re-reads ``path`` every ``seconds`` and reloads the models when its text differs from ``text``.

        TF Serving's --model_config_file_poll_wait_seconds: a file that fails to
        parse or names a model twice is logged and the models served stay as they are.
        """
        threading.Thread(target=self._watch, args=(path, seconds, text), daemon=True).start()

    def _watch(self, path, seconds, text):
        while not self._stop.wait(seconds):
            try:
                with open(path) as handle:
                    new_text = handle.read()
                if new_text == text:
                    continue
                text = new_text
                missing = self.models.reload(from_model_config(text))
            except Exception as error:  # a bad edit must not stop serving
                log.error("model config %s not applied: %s", path, error)
                continue
            if missing:
                log.warning("model config %s: no version available yet for %s", path, ", ".join(missing))

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            for model in self.models.by_name.values():
                model.poll()

    def stop(self, grace=5.0):
        """Stops polling and lets in-flight requests finish (up to ``grace`` seconds)."""
        self._stop.set()
        if self.rest is not None:
            self.rest.stop()
        self.grpc.stop(grace).wait()
        if self.batcher is not None:
            self.batcher.stop()

    def serve_until_signal(self):
        done = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: done.set())
        done.wait()
        self.stop()


