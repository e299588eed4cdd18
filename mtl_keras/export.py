"""Multi-head SavedModels for TensorFlow Serving.

``export_saved_model(model, base_path)`` writes ``base_path/<version>/`` with:

- ``serving_default``: every head, a dict keyed by task name;
- one signature per task, named after it, returning that head;
- ``predict_examples``: serialized ``tf.Example`` protos (input ``examples``,
  string [B]) parsed with a feature spec derived from the model's inputs;
- ``assets.extra/tf_serving_warmup_requests``: a few ``PredictionLog`` records.

Inputs keep the model's input names with a dynamic batch dimension, every
output has dim 0 = batch, and everything runs with ``training=False``. SNR
routers are frozen first, so their z_hat are constants and closed routes are
absent from the graph. Only the variables the signatures read are saved:
auxiliary towers and training state (optimizer slots, weighting variables)
stay behind. The version is written to a temporary folder in ``base_path``
and renamed into place, so a server polling the folder never sees half a
version.
"""

import os
import re
import shutil
import tempfile

import numpy as np

from mtl_keras.backend import keras, tf
from mtl_keras.layers import HardConcreteRouter

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_TEMP_PREFIX = ".export-"
# Names Keras gives an Input nobody named: they change from process to process.
_AUTOMATIC_NAME = re.compile(r"^(keras_tensor|input_layer|input)(_\d+)?$")


def export_saved_model(model, base_path, version=None, warmup_batch_size=2, warmup_records=3):
    """Exports ``model`` to ``base_path/<version>`` and returns that path.

    Args:
        model: a built ``MultiTaskModel`` (or functional Keras model with dict outputs).
        base_path: the model's folder; created if missing.
        version: a non-negative integer; None = the newest version + 1 (1 if none).
        warmup_batch_size, warmup_records: shape and count of the warm-up requests.
    """
    inputs = _named_inputs(model)
    os.makedirs(base_path, exist_ok=True)
    version = _version(base_path, version)
    target = os.path.join(base_path, str(version))
    routers = [layer for layer in _all_layers(model) if isinstance(layer, HardConcreteRouter)]
    temp = tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=base_path)
    try:
        for router in routers:
            router.freeze()
        module, signatures = _serving_module(model, inputs)
        tf.saved_model.save(module, temp, signatures=signatures)
        _write_warmup(temp, inputs, warmup_batch_size, warmup_records)
        if os.path.exists(target):
            raise FileExistsError(f"`version` {version} appeared in {base_path} during the export.")
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        for router in routers:
            router.unfreeze()
    return target


def _named_inputs(model):
    """[(name, TensorSpec)] of the model's inputs, in the model's order."""
    if not isinstance(model, keras.Model):
        raise ValueError(f"`model` must be a Keras model; got {type(model).__name__}.")
    try:
        tensors = model.inputs
    except AttributeError:
        tensors = None
    if not model.built or not tensors:
        raise ValueError("`model` is not built: it has no inputs yet. Build or call it first.")
    named = []
    for tensor in tensors:
        name = _input_name(tensor)
        if _AUTOMATIC_NAME.match(name):
            raise ValueError(
                f"`model` has an unnamed input ({name!r}): name every keras.Input, "
                "since the name is what serving clients send."
            )
        shape = [None] + list(tensor.shape[1:])
        named.append((name, tf.TensorSpec(shape, tf.as_dtype(tensor.dtype), name=name)))
    return named


def _input_name(tensor):
    history = getattr(tensor, "_keras_history", None)
    layer = history[0] if history else None
    return getattr(layer, "name", None) or tensor.name.split(":")[0]


def _version(base_path, version):
    if version is None:
        existing = [int(n) for n in os.listdir(base_path) if n.isdigit()]
        return max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"`version` must be a non-negative integer or None; got {version!r}.")
    if any(n.isdigit() and int(n) == version for n in os.listdir(base_path)):
        raise FileExistsError(f"`version` {version} already exists in {base_path}.")
    return int(version)


def _all_layers(model):
    return model._flatten_layers(include_self=False, recursive=True)


def _structure(model, tensors):
    """The model's input structure from the flat tensors, in ``model.inputs`` order."""
    spec = model.input
    if isinstance(spec, dict):
        names = [_input_name(t) for t in model.inputs]
        return dict(zip(names, tensors))
    if isinstance(spec, (list, tuple)):
        return list(tensors)
    return tensors[0]


def _serving_module(model, inputs):
    specs = [spec for _, spec in inputs]

    def heads(*tensors):
        outputs = model(_structure(model, tensors), training=False)
        if not isinstance(outputs, dict):
            raise ValueError("`model` must return a dict of heads keyed by task name.")
        return {task: tf.identity(value, name=task) for task, value in outputs.items()}

    serve = tf.function(heads, input_signature=specs)
    signatures = {"serving_default": serve.get_concrete_function()}
    tasks = getattr(model, "task_names", None) or list(model.output)
    for task in tasks:
        task_fn = tf.function(lambda *t, task=task: {task: heads(*t)[task]}, input_signature=specs)
        signatures[task] = task_fn.get_concrete_function()
    feature_spec = {
        name: tf.io.FixedLenFeature(spec.shape[1:], tf.float32 if spec.dtype.is_floating else tf.int64)
        for name, spec in inputs
    }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(examples):
        parsed = tf.io.parse_example(examples, feature_spec)
        return heads(*[tf.cast(parsed[name], spec.dtype) for name, spec in inputs])

    signatures["predict_examples"] = predict_examples.get_concrete_function()
    module = tf.Module()
    # Only what the signatures read: no auxiliary towers, no training state.
    seen, kept = set(), []
    for concrete in signatures.values():
        for variable in concrete.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                kept.append(variable)
    module.serving_variables = kept
    return module, signatures


def _write_warmup(folder, inputs, batch_size, records):
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    os.makedirs(os.path.join(folder, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, WARMUP_FILE)) as writer:
        for _ in range(records):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name="serving_default")
            )
            for name, spec in inputs:
                value = np.zeros([batch_size] + list(spec.shape[1:]), spec.dtype.as_numpy_dtype)
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
