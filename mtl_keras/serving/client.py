"""PredictClient: TF Serving's Predict/metadata/status over the official stubs."""

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mtl_keras.serving.tensors import fill_content, to_array


class ServingError(RuntimeError):
    """A failed call, with the server's gRPC status code and message."""

    def __init__(self, code, message):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class PredictClient:
    """A client for ``tensorflow_model_server`` or ``mtl-keras serve``.

    Example:
    >>> client = PredictClient("localhost:8500", model_name="ranker")  # doctest: +SKIP
    >>> client.predict({"features": x})["ctr"]                          # doctest: +SKIP
    """

    def __init__(self, target, model_name, timeout=10.0, max_message_bytes=256 << 20):
        self.model_name = model_name
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.model_service = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def _spec(self, request, version=None, signature_name=None):
        request.model_spec.name = self.model_name
        if version is not None:
            request.model_spec.version.value = int(version)
        if signature_name is not None:
            request.model_spec.signature_name = signature_name
        return request

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(error.code(), error.details()) from None

    def predict(self, inputs, signature_name="serving_default", version=None, output_filter=None):
        """{output alias: np.ndarray} for {input name: array}."""
        request = self._spec(predict_pb2.PredictRequest(), version, signature_name)
        for name, value in inputs.items():
            fill_content(request.inputs[name], value)
        request.output_filter.extend(output_filter or [])
        response = self._call(self.predictions.Predict, request)
        return {alias: to_array(proto) for alias, proto in response.outputs.items()}

    def metadata(self, version=None):
        """{"version": int, "signature_def": {key: SignatureDef proto}}."""
        request = self._spec(get_model_metadata_pb2.GetModelMetadataRequest(), version)
        request.metadata_field.append("signature_def")
        response = self._call(self.predictions.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        return {"version": response.model_spec.version.value, "signature_def": dict(signatures.signature_def)}

    def status(self, version=None):
        """{version: state name} of the versions the server has."""
        request = self._spec(get_model_status_pb2.GetModelStatusRequest(), version)
        response = self._call(self.model_service.GetModelStatus, request)
        names = {10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}
        return {s.version: names.get(s.state, str(s.state)) for s in response.model_version_status}

    def close(self):
        self.channel.close()
