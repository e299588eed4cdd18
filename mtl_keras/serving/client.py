"""PredictClient: TF Serving's Predict, Classify, Regress, metadata and status over the official stubs."""

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from mtl_keras.serving.signature_inputs import cast_input, input_kinds, to_examples
from mtl_keras.serving.tensors import fill_content, to_array


class ServingError(RuntimeError):
    """A failed call, with the server's gRPC status code and message.

    Args:
        code: the ``grpc.StatusCode``.
        message: the server's message.

    Example:
    >>> import grpc
    >>> error = ServingError(grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(ranker)")
    >>> error.code, str(error)
    (<StatusCode.NOT_FOUND: (5, 'not found')>, 'NOT_FOUND: Servable not found for request: Latest(ranker)')
    """

    def __init__(self, code, message):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class PredictClient:
    """A client for ``tensorflow_model_server`` or ``mtl-keras serve``.

    The server checks requests as strictly as TF Serving; the client sends
    what the signature expects: it reads the model's SignatureDefs once
    (``GetModelMetadata``, again when a response comes from another
    version) and casts NumPy arrays, lists and scalars to each input's dtype
    and shape (``signature_inputs.cast_input``; a value it cannot cast
    without loss is a ``ValueError`` naming the input). ``classify``,
    ``regress`` and ``predict_examples`` take rows (a pandas DataFrame, a
    dict of columns or a list of dicts) and send them as tf.Examples, each
    feature of the kind the model's predict signatures give it. A context
    manager: ``with PredictClient(...) as client:`` closes the channel.

    Args:
        target: "host:port" of the gRPC API.
        model_name: the model to ask.
        timeout: seconds per call.
        max_message_bytes: the channel's send and receive limits.

    Example:
    A model exported and served in this process (``mtl-keras serve`` or
    tensorflow_model_server answer the same way):

    >>> import os
    >>> from mtl_keras import export, models
    >>> from mtl_keras.serving.servables import ModelVersions
    >>> from mtl_keras.serving.server import Server
    >>> model = models.mmoe(keras.Input(shape=(6,), name="features"), ["ctr", "cvr"], num_experts=2,
    ...                     expert_units=(4,))
    >>> _ = export.export_saved_model(model, "models/ranker")
    >>> server = Server([ModelVersions("ranker", os.path.abspath("models/ranker"))], port=0).start()
    >>> x = np.random.default_rng(0).random((2, 6), dtype="float32")
    >>> with PredictClient(f"localhost:{server.port}", model_name="ranker") as client:
    ...     predictions = client.predict({"features": x})
    >>> np.allclose(predictions["ctr"], model(x)["ctr"], atol=1e-5)
    True
    >>> server.stop(grace=1)
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
        self._signatures = {}  # requested version (None: the newest) -> metadata()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

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

    def signatures(self, version=None):
        """{key: SignatureDef} of ``version`` (None: the newest), from the server once, then cached."""
        if version not in self._signatures:
            self._signatures[version] = self.metadata(version)
        return self._signatures[version]["signature_def"]

    def _kinds(self, version):
        """{feature: kind} from the predict signatures' inputs (an mtl_keras export's raw features)."""
        return input_kinds({k: d for k, d in self.signatures(version).items() if d.method_name.endswith("predict")})

    def _signature(self, key, version):
        signatures = self.signatures(version)
        if key not in signatures:
            raise ValueError(f"Model {self.model_name!r} has no signature {key!r}; it has {sorted(signatures)}.")
        return signatures[key]

    def _predict_request(self, inputs, signature_name, version, output_filter=None):
        definition = self._signature(signature_name, version)
        unknown = sorted(set(inputs) - set(definition.inputs))
        missing = sorted(set(definition.inputs) - set(inputs))
        if unknown or missing:
            raise ValueError(
                f"Signature {signature_name!r} of model {self.model_name!r} takes inputs "
                f"{sorted(definition.inputs)}; got {sorted(inputs)} (unknown: {unknown}, missing: {missing})."
            )
        request = self._spec(predict_pb2.PredictRequest(), version, signature_name)
        for name, value in inputs.items():
            fill_content(request.inputs[name], cast_input(signature_name, name, value, definition.inputs[name]))
        request.output_filter.extend(output_filter or [])
        return request

    def _served(self, method, build, version):
        """Calls ``method`` with ``build()``; a request cast for a version the server no longer serves
        (INVALID_ARGUMENT after a version change) is rebuilt from the new version's metadata, once."""
        request = build()
        try:
            response = self._call(method, request)
        except ServingError as error:
            if error.code != grpc.StatusCode.INVALID_ARGUMENT or version is not None:
                raise
            fresh = self.metadata(version)
            if fresh["version"] == self._signatures[version]["version"]:
                raise
            self._signatures[version] = fresh
            response = self._call(method, build())
        if response.model_spec.version.value != self._signatures[version]["version"]:
            self._signatures.pop(version, None)  # another version answered: read its signatures next time
        return response

    def predict(self, inputs, signature_name="serving_default", version=None, output_filter=None):
        """{output alias: np.ndarray} for {input name: array, list or scalar}."""
        build = lambda: self._predict_request(inputs, signature_name, version, output_filter)  # noqa: E731
        response = self._served(self.predictions.Predict, build, version)
        return {alias: to_array(proto) for alias, proto in response.outputs.items()}

    def _examples_request(self, request_type, examples, signature_name, version):
        self._signature(signature_name, version)
        request = self._spec(request_type(), version, signature_name)
        request.input.example_list.examples.extend(to_examples(examples, self._kinds(version)))
        return request

    def predict_examples(self, examples, signature_name="predict_examples", version=None):
        """{output alias: np.ndarray} of an mtl_keras export's ``predict_examples`` signature for
        ``examples`` (a DataFrame, a dict of columns or a list of dicts), sent as serialized tf.Examples."""
        def build():
            serialized = [e.SerializeToString() for e in to_examples(examples, self._kinds(version))]
            return self._predict_request({"examples": np.array(serialized, dtype=object)}, signature_name, version)

        response = self._served(self.predictions.Predict, build, version)
        return {alias: to_array(proto) for alias, proto in response.outputs.items()}

    def classify(self, examples, signature_name="serving_default", version=None):
        """(labels [N, K], scores [N, K]) of a classify signature for ``examples`` (a DataFrame, a dict
        of columns or a list of dicts); labels are empty strings where the model gives none."""
        build = lambda: self._examples_request(  # noqa: E731
            classification_pb2.ClassificationRequest, examples, signature_name, version)
        response = self._served(self.predictions.Classify, build, version)
        rows = response.result.classifications
        labels = np.array([[c.label for c in row.classes] for row in rows], dtype=object)
        return labels, np.array([[c.score for c in row.classes] for row in rows], np.float32)

    def regress(self, examples, signature_name="serving_default", version=None):
        """The values [N] of a regress signature for ``examples`` (as ``classify``)."""
        build = lambda: self._examples_request(  # noqa: E731
            regression_pb2.RegressionRequest, examples, signature_name, version)
        response = self._served(self.predictions.Regress, build, version)
        return np.array([r.value for r in response.result.regressions], np.float32)

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
        """Closes the gRPC channel (what leaving ``with PredictClient(...) as client:`` does)."""
        self.channel.close()
