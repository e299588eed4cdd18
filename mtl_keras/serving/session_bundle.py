"""A SavedModel run the way TF Serving's SavedModelBundle runs it.

The MetaGraph is imported into a graph of its own and restored in a
``tf.compat.v1.Session``; each signature becomes one C++ callable that feeds
the signature's input tensors by name and fetches its output tensors by name.
This serves TF1 exports (ref variables, non-placeholder inputs, legacy init
ops) that ``tf.saved_model.load`` refuses, and, like TF Serving, it feeds a
tensor whatever its shape: a placeholder's declared shape is not checked
(Python's ``Session.run`` would check it; the C++ callable does not), so
TensorFlow's kernels decide what runs.
"""

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

INIT_OP_KEY = "__saved_model_init_op"


def spec_of(info):
    """The TensorSpec of a SignatureDef TensorInfo (None dims for -1, no rank for unknown_rank)."""
    shape = None if info.tensor_shape.unknown_rank else [d.size if d.size >= 0 else None for d in info.tensor_shape.dim]
    return tf.TensorSpec(shape, tf.dtypes.as_dtype(info.dtype), name=info.name)


def _runnable(definition):
    infos = list(definition.inputs.values()) + list(definition.outputs.values())
    return all(info.WhichOneof("encoding") == "name" and info.dtype for info in infos)


class SessionBundle:
    """The session of one SavedModel folder and a callable per signature."""

    def __init__(self, path, signature_defs, tags=("serve",)):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            tf.compat.v1.saved_model.loader.load(self.session, list(tags), path)
        self.functions = {
            key: self._callable(definition)
            for key, definition in signature_defs.items()
            if key != INIT_OP_KEY and _runnable(definition)
        }

    def _callable(self, definition):
        """``function(**arrays) -> {output alias: array}`` for one SignatureDef."""
        inputs, outputs = sorted(definition.inputs), sorted(definition.outputs)
        options = config_pb2.CallableOptions()
        options.feed.extend(definition.inputs[alias].name for alias in inputs)
        options.fetch.extend(definition.outputs[alias].name for alias in outputs)
        run = self.session._make_callable_from_options(options)  # the C++ callable; see the module docstring

        def call(**feed):
            return dict(zip(outputs, run(*(feed[alias] for alias in inputs))))

        return call

    def close(self):
        self.session.close()
