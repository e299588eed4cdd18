"""A version's ``model.tflite`` served through ``tf.lite.Interpreter`` (TF Serving's --prefer_tflite_model).

As TF Serving does, the SignatureDefs stored in the model's
``signature_defs_metadata`` (a flexbuffer map of serialized SignatureDefs) give
the aliases, each naming a tensor of the model; a model without them gets one
``serving_default`` whose aliases are its tensor names. Each request resizes the inputs to the shapes it sends
(a [1] request runs on a model declared [1, 1]); the interpreter is not
thread-safe, so calls take turns.
"""

import threading
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from mtl_keras.backend import tflite_schema

TFLITE_FILE = "model.tflite"
SIGNATURES_METADATA = b"signature_defs_metadata"
PREDICT_METHOD = "tensorflow/serving/predict"


def _info(detail):
    info = meta_graph_pb2.TensorInfo(name=detail["name"], dtype=tf.as_dtype(detail["dtype"]).as_datatype_enum)
    for size in detail.get("shape_signature", detail["shape"]):
        info.tensor_shape.dim.add().size = int(size)
    return info


def embedded_signature_defs(path):
    """{key: SignatureDef} stored in a .tflite file's metadata, {} when it has none."""
    from flatbuffers import flexbuffers

    with open(path, "rb") as handle:
        model = tflite_schema().Model.GetRootAsModel(handle.read(), 0)
    for index in range(model.MetadataLength()):
        metadata = model.Metadata(index)
        if metadata.Name() == SIGNATURES_METADATA:
            entries = flexbuffers.Loads(model.Buffers(metadata.Buffer()).DataAsNumpy().tobytes())
            return {key: meta_graph_pb2.SignatureDef.FromString(value if isinstance(value, bytes)
                                                                 else value.encode("latin-1"))
                    for key, value in entries.items()}
    return {}


def _tensor(info):
    return info.name.split(":")[0]


class TfLiteBundle:
    """``signature_defs`` and ``signatures`` ({key: (function, specs, output aliases)}) of one .tflite file."""

    def __init__(self, path):
        with warnings.catch_warnings():  # the deprecation notice of tf.lite.Interpreter, once per load
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_path=path)
        self.interpreter.allocate_tensors()
        self._lock = threading.Lock()
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self.signature_defs = embedded_signature_defs(path)
        if not self.signature_defs:
            definition = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
            for detail in inputs:
                definition.inputs[detail["name"]].CopyFrom(_info(detail))
            for detail in outputs:
                definition.outputs[detail["name"]].CopyFrom(_info(detail))
            self.signature_defs = {"serving_default": definition}
        indices = {d["name"]: d["index"] for d in inputs + outputs}
        self.signatures = {}
        for key, definition in self.signature_defs.items():
            feeds = {alias: indices[_tensor(info)] for alias, info in definition.inputs.items()}
            fetches = {alias: indices[_tensor(info)] for alias, info in definition.outputs.items()}
            specs = {alias: tf.TensorSpec(None, tf.as_dtype(info.dtype), name=info.name)
                     for alias, info in definition.inputs.items()}
            self.signatures[key] = (self._caller(feeds, fetches), specs, sorted(fetches))

    def _caller(self, feeds, fetches):
        def call(**feed):
            with self._lock:
                for alias, index in feeds.items():
                    value = np.asarray(feed[alias])
                    if list(self.interpreter.get_tensor(index).shape) != list(value.shape):
                        self.interpreter.resize_tensor_input(index, value.shape)
                        self.interpreter.allocate_tensors()
                    self.interpreter.set_tensor(index, value)
                self.interpreter.invoke()
                return {alias: self.interpreter.get_tensor(index).copy() for alias, index in fetches.items()}

        return call
