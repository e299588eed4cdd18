"""A version's ``model.tflite`` served through ``tf.lite.Interpreter`` (TF Serving's --prefer_tflite_model).

As TF Serving does for a TFLite model without SignatureDefs, one
``serving_default`` signature is made whose input and output aliases are the
model's tensor names. Each request resizes the inputs to the shapes it sends
(a [1] request runs on a model declared [1, 1]); the interpreter is not
thread-safe, so calls take turns.
"""

import threading
import warnings

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

TFLITE_FILE = "model.tflite"
PREDICT_METHOD = "tensorflow/serving/predict"


def _info(detail):
    info = meta_graph_pb2.TensorInfo(name=detail["name"], dtype=tf.as_dtype(detail["dtype"]).as_datatype_enum)
    for size in detail.get("shape_signature", detail["shape"]):
        info.tensor_shape.dim.add().size = int(size)
    return info


class TfLiteBundle:
    """``signature_defs`` and ``signatures`` ({key: (function, specs, output aliases)}) of one .tflite file."""

    def __init__(self, path):
        with warnings.catch_warnings():  # the deprecation notice of tf.lite.Interpreter, once per load
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_path=path)
        self.interpreter.allocate_tensors()
        self._lock = threading.Lock()
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        definition = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
        for detail in inputs:
            definition.inputs[detail["name"]].CopyFrom(_info(detail))
        for detail in outputs:
            definition.outputs[detail["name"]].CopyFrom(_info(detail))
        self.signature_defs = {"serving_default": definition}
        specs = {d["name"]: tf.TensorSpec(None, tf.as_dtype(d["dtype"]), name=d["name"]) for d in inputs}
        self._inputs = {d["name"]: d["index"] for d in inputs}
        self._outputs = {d["name"]: d["index"] for d in outputs}
        self.signatures = {"serving_default": (self._call, specs, sorted(self._outputs))}

    def _call(self, **feed):
        with self._lock:
            for alias, index in self._inputs.items():
                value = np.asarray(feed[alias])
                if list(self.interpreter.get_tensor(index).shape) != list(value.shape):
                    self.interpreter.resize_tensor_input(index, value.shape)
                    self.interpreter.allocate_tensors()
                self.interpreter.set_tensor(index, value)
            self.interpreter.invoke()
            return {alias: self.interpreter.get_tensor(index).copy() for alias, index in self._outputs.items()}
