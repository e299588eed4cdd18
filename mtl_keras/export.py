"""Multi-head SavedModels for TensorFlow Serving.

``export_saved_model(model, base_path)`` writes ``base_path/<version>/`` with:

- ``serving_default``: every head, a dict keyed by task name;
- one signature per task, named after it, returning that head;
- ``predict_examples``: serialized ``tf.Example`` protos (input ``examples``,
  string [B]) parsed with a feature spec derived from the model's inputs;
- ``assets.extra/tf_serving_warmup_requests``: a few ``PredictionLog`` records;
- with ``ranking_score``: a ``rank_score`` [B, 1] output in ``serving_default``
  and a ``rank`` signature returning it alone.

A model built from a ``mtl_keras.features.FeatureSpec`` exports with its raw
inputs (strings, int64 ids, float32 values, id sequences [B, L] padded with
-1 or ""), the lookups inside the graph: ids it has never seen go to the OOV
row. ``predict_examples`` parses those features from ``tf.Example`` (an id
sequence as a variable-length list).

Inputs keep the model's input names with a dynamic batch dimension, every
output has dim 0 = batch, and everything runs with ``training=False``. Every
layer with the ``mtl_keras.layers.pruning.PrunedAtExport`` mixin is frozen for
the export: SNR routers' z_hat become constants and closed routes are absent
from the graph; MMoE layers and CGC/PLE levels whose static DSelect-k gates
have converged compute only the selected experts. Searched structures
(AdaShare policies, Learning to Branch trees, MTL-NAS edges) must be frozen
first (a ValueError says so); each signature then computes only the blocks
its heads use. Only the variables the signatures read are saved: auxiliary
towers and training state (optimizer slots, weighting variables) stay behind.
The version is written whole or not at all (``mtl_keras.export_versions``).
"""

import re

import numpy as np

from mtl_keras.backend import all_layers, keras, tf
from mtl_keras.export_versions import WARMUP_FILE, write_version
from mtl_keras.features.inputs import raw_features
from mtl_keras.features.layers import IdLookup, pad_value
from mtl_keras.layers.gumbel import LearntStructure
from mtl_keras.layers.pruning import frozen_for_export

__all__ = ["FUSIONS", "RANK_SCORE", "WARMUP_FILE", "export_saved_model", "signature_variables", "write_version"]
# Names Keras gives an Input nobody named: they change from process to process.
_AUTOMATIC_NAME = re.compile(r"^(keras_tensor|input_layer|input)(_\d+)?$")
RANK_SCORE = "rank_score"
FUSIONS = ("linear", "product")


def export_saved_model(
    model, base_path, version=None, warmup_batch_size=2, warmup_records=3,
    ranking_score=None, ranking_fusion="linear",
):
    """Exports ``model`` to ``base_path/<version>`` and returns that path.

    Args:
        model: a built ``MultiTaskModel`` (or functional Keras model with dict outputs).
        base_path: the model's folder; created if missing.
        version: a non-negative integer; None = the newest version + 1 (1 if none).
        warmup_batch_size, warmup_records: shape and count of the warm-up requests.
        ranking_score: {task: weight w_t}: adds ``rank_score`` [B, 1] to
            ``serving_default`` and a ``rank`` signature returning it alone.
        ranking_fusion: "linear", sum_t w_t p_t, or "product", prod_t p_t ** w_t.

    Example:
    >>> import os
    >>> from mtl_keras import models
    >>> model = models.mmoe(keras.Input(shape=(6,), name="features"), ["ctr", "cvr"], num_experts=2,
    ...                     expert_units=(4,))
    >>> path = export_saved_model(model, "models/ranker")
    >>> path.endswith(os.path.join("ranker", "1")), sorted(os.listdir(path))
    (True, ['assets', 'assets.extra', 'fingerprint.pb', 'saved_model.pb', 'variables'])
    >>> served = tf.saved_model.load(path).signatures["serving_default"]
    >>> sorted(served(features=tf.ones([2, 6])))
    ['ctr', 'cvr']
    """
    inputs = _named_inputs(model)
    fusion = _fusion(model, ranking_score, ranking_fusion)
    for layer in _all_layers(model):
        if isinstance(layer, LearntStructure):  # AdaShare, Learning to Branch, MTL-NAS: frozen first
            layer.check_frozen()
    with frozen_for_export(_all_layers(model)):
        module, signatures = _serving_module(model, inputs, fusion)
        return write_version(
            base_path, version, lambda folder: tf.saved_model.save(module, folder, signatures=signatures),
            inputs, warmup_batch_size, warmup_records,
        )


def signature_variables(signatures):
    """The variables the signatures read, each once: what a serving module keeps.

    Auxiliary towers and training state are left out: no signature reads them.

    Args:
        signatures: {name: concrete function}.

    Returns:
        The variables, in the order the signatures first read them.

    Example:
    >>> module = tf.Module()
    >>> module.w = tf.Variable(2.0)
    >>> module.unused = tf.Variable(5.0)
    >>> serve = tf.function(lambda x: x * module.w, input_signature=[tf.TensorSpec([None], tf.float32)])
    >>> [float(v.numpy()) for v in signature_variables({"serving_default": serve.get_concrete_function()})]
    [2.0]
    """
    seen, kept = set(), []
    for concrete in signatures.values():
        for variable in concrete.variables:
            if id(variable) not in seen:
                seen.add(id(variable))
                kept.append(variable)
    return kept


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


def _all_layers(model):
    return all_layers(model)


def _structure(model, tensors):
    """The model's input structure from the flat tensors, in ``model.inputs`` order."""
    spec = model.input
    if isinstance(spec, dict):
        names = [_input_name(t) for t in model.inputs]
        return dict(zip(names, tensors))
    if isinstance(spec, (list, tuple)):
        return list(tensors)
    return tensors[0]


def _fusion(model, weights, fusion):
    """The ranking fusion as a function of the heads, or None without ``ranking_score``."""
    if weights is None:
        return None
    if fusion not in FUSIONS:
        raise ValueError(f"`ranking_fusion` must be one of {FUSIONS}; got {fusion!r}.")
    tasks = getattr(model, "task_names", None) or list(model.output)
    if not isinstance(weights, dict) or not weights:
        raise ValueError(f"`ranking_score` must be a non-empty dict {{task: weight}}; got {weights!r}.")
    for task, weight in weights.items():
        if task not in tasks:
            raise ValueError(
                f"`ranking_score` names task {task!r}, which the model lacks; its tasks are {list(tasks)}."
            )
        if not np.isfinite(float(weight)):
            raise ValueError(f"`ranking_score[{task!r}]` must be a finite number; got {weight!r}.")
    weights = {task: float(weight) for task, weight in weights.items()}

    def fuse(heads):
        terms = [tf.cast(heads[task], tf.float32) for task in weights]
        if fusion == "linear":
            return tf.add_n([w * p for w, p in zip(weights.values(), terms)])
        return tf.reduce_prod(tf.stack([tf.pow(p, w) for w, p in zip(weights.values(), terms)]), axis=0)

    return fuse


def _example_features(inputs, raw=()):
    """The tf.Example parsing spec of the inputs: id sequences are variable-length lists; a FeatureSpec
    feature (named in ``raw``) left out of an example is missing: "", -1 or NaN, its OOV row or default."""
    spec = {}
    for name, tensor_spec in inputs:
        dtype = tf.string if tensor_spec.dtype == tf.string else (
            tf.float32 if tensor_spec.dtype.is_floating else tf.int64
        )
        if None in tensor_spec.shape[1:]:
            spec[name] = tf.io.VarLenFeature(dtype)
        else:
            missing = {tf.string: "", tf.float32: np.nan, tf.int64: -1}[dtype] if name in raw else None
            default = None if missing is None else np.full(tensor_spec.shape[1:], missing, dtype.as_numpy_dtype)
            spec[name] = tf.io.FixedLenFeature(tensor_spec.shape[1:], dtype, default_value=default)
    return spec


def _parsed_inputs(parsed, inputs):
    tensors = []
    for name, spec in inputs:
        value = parsed[name]
        if isinstance(value, tf.SparseTensor):
            pad = pad_value("string" if spec.dtype == tf.string else "int64")
            value = tf.sparse.to_dense(value, default_value=pad)
        tensors.append(value if spec.dtype == tf.string else tf.cast(value, spec.dtype))
    return tensors


def _serving_module(model, inputs, fusion=None):
    specs = [spec for _, spec in inputs]

    def heads(*tensors):
        outputs = model(_structure(model, tensors), training=False)
        if not isinstance(outputs, dict):
            raise ValueError("`model` must return a dict of heads keyed by task name.")
        named = {task: tf.identity(value, name=task) for task, value in outputs.items()}
        if fusion is not None:
            named[RANK_SCORE] = tf.identity(fusion(outputs), name=RANK_SCORE)
        return named

    serve = tf.function(heads, input_signature=specs)
    signatures = {"serving_default": serve.get_concrete_function()}
    tasks = getattr(model, "task_names", None) or list(model.output)
    single = {task: task for task in tasks}  # signature name -> its one output
    if fusion is not None:
        single["rank"] = RANK_SCORE
    for name, output in single.items():
        one = tf.function(lambda *t, output=output: {output: heads(*t)[output]}, input_signature=specs)
        signatures[name] = one.get_concrete_function()
    feature_spec = _example_features(inputs, raw_features(model))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def predict_examples(examples):
        parsed = tf.io.parse_example(examples, feature_spec)
        return heads(*_parsed_inputs(parsed, inputs))

    signatures["predict_examples"] = predict_examples.get_concrete_function()
    module = tf.Module()
    # The lookup tables are resources, not variables: the module must track the layers
    # owning them, else saving fails under tf_keras ("untracked resource").
    module.lookups = [layer for layer in _all_layers(model) if isinstance(layer, IdLookup)]
    module.serving_variables = signature_variables(signatures)
    return module, signatures
