"""TF Serving's gRPC services (PredictionService, ModelService).

The services' methods take a request, return a response and raise
``RequestError`` with TF Serving's code and message (SERVING.md); the REST API
calls the same methods. Two hosts run them (``hosts``), chosen by the server:

- ``ThreadedGrpc`` (batching off): each call runs on a pool thread, one
  hand-off from gRPC's completion queue. Lowest latency for a lone request
  (docs/benchmarks.md, "Why the defaults").
- ``AsyncioGrpc`` (batching on): an asyncio event loop in a thread of its
  own. Small Predict requests are checked on the loop and await the batcher,
  which answers a whole batch with one wake-up of the loop; a thread-pool
  server pays a thread hand-off, and GIL contention among its threads, per
  request. Blocking work (reloads, large requests) still goes to the pool.
"""

import asyncio
import time

import grpc
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mtl_keras.serving import inference, validation
from mtl_keras.serving.servables import from_config_list
from mtl_keras.serving.tensors import fill

AVAILABLE = 30
# A larger Predict request is checked and converted on the thread pool, never on the event loop.
INLINE_REQUEST_BYTES = 64 << 10


def _model_name(request):
    tasks = getattr(request, "tasks", None)
    if tasks is not None:
        return tasks[0].model_spec.name if len(tasks) else ""
    return request.model_spec.name


def answer(service, api, entrypoint, method, request):
    """``method(service, request)``, with any failure turned into a RequestError and the call counted.

    A TensorFlow error from the model call keeps its code and message, as TF
    Serving passes them on; anything else is INTERNAL, never a dead server.
    """
    start, status = time.perf_counter(), "OK"
    try:
        return method(service, request)
    except validation.RequestError as error:
        status = error.code.name
        raise
    except tf.errors.OpError as error:
        failure = validation.from_tensorflow(error)
        status = failure.code.name
        raise failure from None
    except Exception as error:
        status = "INTERNAL"
        raise validation.RequestError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}") from None
    finally:
        if service.metrics is not None and api is not None:
            service.metrics.record(_model_name(request), api, entrypoint, status, time.perf_counter() - start)


def _grpc(method, api=None):
    """The gRPC handler (thread-pool server) of a method that takes a request and raises RequestError."""

    def handler(self, request, context):
        try:
            return answer(self, api, "GRPC", method, request)
        except validation.RequestError as error:
            context.abort(error.code, error.message)

    handler.blocking, handler.api = method, api
    return handler


def _grpc_on_pool(method, api):
    """The asyncio handler of the same method: it runs on ``self.executor``, off the event loop."""

    async def handler(self, request, context):
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, answer, self, api, "GRPC", method, request
            )
        except validation.RequestError as error:
            await context.abort(error.code, error.message)

    return handler


def _on_event_loop(service):
    """A subclass of ``service`` whose gRPC handlers are coroutines, for ``AsyncioGrpc``."""
    handlers = {
        name: _grpc_on_pool(h.blocking, h.api) for name, h in vars(service).items() if hasattr(h, "blocking")
    }
    return type(f"EventLoop{service.__name__}", (service,), handlers)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict, GetModelMetadata, Classify, Regress, MultiInference; ``executor`` runs blocking work for
    ``AsyncioGrpc``; ``metrics`` (monitoring.Metrics or None) counts the calls."""

    def __init__(self, models, batcher=None, executor=None, metrics=None):
        self.models = models
        self.batcher = batcher
        self.executor = executor
        self.metrics = metrics

    def _prepare(self, request):
        """(name, servable, signature key, function, input arrays, output aliases), checked in TF Serving's order."""
        name, version = self.models.model_spec(request)
        servable = self.models.servable(name, version)
        key = validation.signature(servable, request.model_spec.signature_name)
        function, specs, outputs = servable.signatures[key]
        return name, servable, key, function, validation.inputs(request, specs), validation.output_filter(request, outputs)

    @staticmethod
    def _respond(name, servable, key, chosen, results):
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = key
        for alias in chosen:
            fill(response.outputs[alias], results[alias])
        return response

    def predict(self, request):
        """A blocking Predict; with a batcher, requests in flight together still merge."""
        name, servable, key, function, arrays, chosen = self._prepare(request)
        start = time.perf_counter()
        if self.batcher is not None:
            results = self.batcher.run(self.batcher.key(name, servable.version, key, arrays), function, arrays)
        else:
            results = function(**arrays)
        self._ran(name, start)
        return self._respond(name, servable, key, chosen, results)

    def _ran(self, name, start):
        """A Predict's model call (batching wait included) in runtime_latency, as TF Serving's RunPredict."""
        if self.metrics is not None:
            self.metrics.record_runtime(name, "Predict", time.perf_counter() - start)

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

    def _servable(self, request):
        return self.models.servable(*self.models.model_spec(request))

    def classify(self, request):
        return inference.classify(self._servable(request), request)

    def regress(self, request):
        return inference.regress(self._servable(request), request)

    def multi_inference(self, request):
        """Every task runs on the servable of the first task's ModelSpec, as in TF Serving."""
        holder = predict_pb2.PredictRequest()  # carries that ModelSpec through the usual checks
        holder.model_spec.SetInParent()
        if request.tasks:
            holder.model_spec.CopyFrom(request.tasks[0].model_spec)
        return inference.multi_inference(self._servable(holder), request)

    Predict = _grpc(predict, "Predict")
    GetModelMetadata = _grpc(metadata)
    Classify = _grpc(classify, "Classify")
    Regress = _grpc(regress, "Regress")
    MultiInference = _grpc(multi_inference, "MultiInference")


class BatchingPredictionService(_on_event_loop(PredictionService)):
    """PredictionService for ``AsyncioGrpc`` with a batcher: a small request never leaves the event loop
    but for the merged model call."""

    async def Predict(self, request, context):
        if request.ByteSize() > INLINE_REQUEST_BYTES:
            return await super().Predict(request, context)
        start, status = time.perf_counter(), "OK"
        try:
            name, servable, key, function, arrays, chosen = self._prepare(request)
            ran = time.perf_counter()
            if self.batcher.bypasses(arrays):
                results = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.batcher.run_alone, function, arrays
                )
            else:
                results = await self.batcher.submit(self.batcher.key(name, servable.version, key, arrays), function, arrays)
            self._ran(name, ran)
            return self._respond(name, servable, key, chosen, results)
        except Exception as error:  # the same answers as ``answer`` gives on the thread pool
            if isinstance(error, tf.errors.OpError):
                error = validation.from_tensorflow(error)
            elif not isinstance(error, validation.RequestError):
                error = validation.RequestError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
            status = error.code.name
            await context.abort(error.code, error.message)
        finally:
            if self.metrics is not None:
                self.metrics.record(request.model_spec.name, "Predict", "GRPC", status, time.perf_counter() - start)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest; ``executor`` as for PredictionService."""

    def __init__(self, models, executor=None):
        self.models = models
        self.executor = executor
        self.metrics = None

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
            status.status.SetInParent()  # error_code OK, printed in REST JSON as TF Serving prints it
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
            models = from_config_list(request.config.model_config_list, self.models.prefer_tflite)
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


EventLoopModelService = _on_event_loop(ModelService)
