"""Loaded model versions, and the folder poller that keeps them current.

Follows TF Serving's version rules: integer-named folders under the base path
(``00001`` is version 1; other names ignored); policy ``latest`` (N newest),
``all`` or ``specific``; a new version is loaded and warmed up (replaying
``assets.extra/tf_serving_warmup_requests``) before an old one is unloaded, so
no request finds the model missing during a swap. A folder that fails to load
is skipped and retried on the next poll; the versions already loaded keep
serving.
"""

import collections
import logging
import os
import threading
import time

import tensorflow as tf

from tensorflow.core.protobuf import saved_model_pb2

from mtl_keras.serving import inference
from mtl_keras.serving.session_bundle import SessionBundle, spec_of
from mtl_keras.serving.tflite import TFLITE_FILE, TfLiteBundle
from mtl_keras.serving.validation import from_tensorflow

log = logging.getLogger(__name__)
NO_VERSIONS = ("No versions of servable %s found under base path %s. "
               "Did you forget to name your leaf directory as a number (eg. '/1/')?")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


Signature = collections.namedtuple("Signature", "function inputs outputs")
_REPLAYS = {"classify_log": "classify", "regress_log": "regress", "multi_inference_log": "multi_inference"}


def _flat_call(function, inputs):
    """``function(**arrays)`` as one call of the graph function behind it.

    Calling a restored signature from Python binds its arguments, looks up the
    handle of every captured variable and packs the outputs on each call. Here
    that happens once, at load: the signature is traced into one concrete
    function, and each request calls that function's graph with flat tensors
    (inputs in sorted alias order, then the captured variables), as TF
    Serving's C++ server feeds a session, without the restored signature's
    per-call packing (docs/benchmarks.md, "Why the defaults"). Same graph, same outputs; the
    batch dimension stays dynamic. ``AtomicFunction.call_flat`` is TF-internal,
    which is one reason the TensorFlow requirement is pinned to a minor version.
    """
    concrete = tf.function(
        lambda feed: function(**feed), input_signature=[dict(inputs)], autograph=False
    ).get_concrete_function()
    graph_function, captured = concrete._inference_function, list(concrete.captured_inputs)
    aliases = sorted(inputs)
    dtypes = [inputs[alias].dtype for alias in aliases]
    outputs = tf.nest.flatten({alias: alias for alias in concrete.structured_outputs})

    def call(**feed):
        flat = [tf.constant(feed[alias], dtype) for alias, dtype in zip(aliases, dtypes)]
        return dict(zip(outputs, graph_function.call_flat(*flat, *captured)))

    return call


class Servable:
    """One loaded version: its signatures and their SignatureDef protos.

    TF1 exports (no object graph) run as TF Serving runs every SavedModel: the
    MetaGraph in a session, signatures fed and fetched by tensor name
    (``session_bundle``). TF2 exports, mtl_keras's included, take the faster
    ``_flat_call`` of the restored signatures; the graph is the same, so are
    the answers. A TF2 folder that ``tf.saved_model.load`` refuses falls back
    to the session. With ``prefer_tflite`` a version holding ``model.tflite``
    runs that file instead (TF Serving's --prefer_tflite_model).
    """

    def __init__(self, version, path, prefer_tflite=False):
        self.version = version
        self.path = path
        if prefer_tflite and os.path.exists(os.path.join(path, TFLITE_FILE)):
            self.bundle = TfLiteBundle(os.path.join(path, TFLITE_FILE))
            self.signature_defs = self.bundle.signature_defs
            self.signatures = {key: Signature(*s) for key, s in self.bundle.signatures.items()}
            return
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise FileNotFoundError(f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}")
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
            proto.ParseFromString(handle.read())
        meta_graph = proto.meta_graphs[0]
        self.signature_defs = dict(meta_graph.signature_def)
        self.signatures = None
        if len(meta_graph.object_graph_def.nodes):
            try:
                self.signatures = self._restored(path)
            except Exception as error:  # e.g. "Shapes must be equal rank": TF Serving's session loads it
                log.info("%s: tf.saved_model.load failed (%s); loading it in a session", path, error)
        if self.signatures is None:
            bundle = self.bundle = SessionBundle(path, self.signature_defs, meta_graph.meta_info_def.tags or ("serve",))
            self.signatures = {
                key: Signature(function, self._specs(key), sorted(self.signature_defs[key].outputs))
                for key, function in bundle.functions.items()
            }
        self._warm_up()

    def _restored(self, path):
        loaded = self.loaded = tf.saved_model.load(path)
        signatures = {}
        for key, function in loaded.signatures.items():
            inputs = function.structured_input_signature[1]
            signatures[key] = Signature(_flat_call(function, inputs), inputs, sorted(self.signature_defs[key].outputs))
        return signatures

    def _specs(self, key):
        return {alias: spec_of(info) for alias, info in self.signature_defs[key].inputs.items()}

    def _warm_up(self):
        from tensorflow_serving.apis import prediction_log_pb2

        self.warmup_records = 0
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.exists(path):
            return
        start = time.monotonic()
        for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
            if index >= 1000:
                break
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            kind = entry.WhichOneof("log_type")
            if kind == "predict_log":
                request = entry.predict_log.request
                function, _, _ = self.signatures[request.model_spec.signature_name or "serving_default"]
                function(**{k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            elif kind in _REPLAYS:  # TF Serving replays every kind of warm-up record it can log
                getattr(inference, _REPLAYS[kind])(self, getattr(entry, kind).request)
            self.warmup_records += 1
        # saved_model_warmup_util.cc's line, logged before the version is served (AVAILABLE).
        log.info(
            "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
            "Elapsed time (microseconds): %d.",
            path, self.warmup_records, int((time.monotonic() - start) * 1e6),
        )


def _status(error):
    """A load failure as TF Serving prints a servable's health: CODE: message."""
    if isinstance(error, tf.errors.OpError):
        failure = from_tensorflow(error)
        return f"{failure.code.name}: {failure.message}"
    if isinstance(error, FileNotFoundError):
        return f"NOT_FOUND: {error}"
    return f"{type(error).__name__}: {error}"


class ModelVersions:
    """The versions of one model that are loaded, kept current by ``poll``."""

    def __init__(self, name, base_path, policy="latest", num_versions=1, versions=(), labels=None,
                 prefer_tflite=False):
        if policy not in ("latest", "all", "specific"):
            raise ValueError(f"`policy` must be 'latest', 'all' or 'specific'; got {policy!r}.")
        self.name = name
        self.base_path = base_path
        self.policy = policy
        self.num_versions = int(num_versions)
        self.wanted = {int(v) for v in versions}
        self.labels = {str(k): int(v) for k, v in (labels or {}).items()}
        self.prefer_tflite = prefer_tflite
        self.loaded = {}  # version -> Servable; replaced as a whole, never mutated
        self._lock = threading.Lock()
        self.failed = {}  # version -> why it did not load, until it loads or the policy changes

    def on_disk(self):
        """{version: folder} for every integer-named folder, as TF Serving's FileSystemStoragePathSource
        lists them: one without a loadable model fails to load (logged, retried each poll)."""
        found = {}
        if os.path.isdir(self.base_path):
            for entry in os.listdir(self.base_path):
                path = os.path.join(self.base_path, entry)
                if entry.isdigit() and os.path.isdir(path):
                    found[int(entry)] = path
        return found

    def _desired(self, found):
        if self.policy == "all":
            return set(found)
        if self.policy == "specific":
            return self.wanted & set(found)
        return set(sorted(found)[-self.num_versions:])

    def poll(self):
        """Loads the versions the policy wants, then unloads the others."""
        with self._lock:
            found = self.on_disk()
            if not found:  # file_system_storage_path_source.cc's warning, on every poll as there
                log.warning(NO_VERSIONS, self.name, self.base_path)
            desired = self._desired(found)
            current = dict(self.loaded)
            for version in sorted(desired - set(current)):
                try:
                    current[version] = Servable(version, found[version], self.prefer_tflite)
                except Exception as error:  # a corrupt or half-copied folder must not stop serving
                    if version not in self.failed:
                        log.error("skipping %s version %s: %s", self.name, version, error)
                    self.failed[version] = _status(error)
                    continue
                self.failed.pop(version, None)
                self.loaded = dict(current)  # the new version serves before any old one leaves
            # Keep what the policy wants among the versions that did load: when the newest
            # fails to load, the one before it keeps serving.
            loadable = sorted(v for v in current if v in found)
            if self.policy == "latest":
                keep = set(loadable[-self.num_versions:])
            elif self.policy == "all":
                keep = set(loadable)
            else:
                keep = desired & set(loadable)
            self.loaded = {v: current[v] for v in keep}

    def adopt(self, other):
        """Takes ``other``'s version policy and labels (same base path), keeping the loaded versions."""
        with self._lock:
            self.policy, self.num_versions, self.wanted = other.policy, other.num_versions, other.wanted
            self.labels, self.prefer_tflite = other.labels, other.prefer_tflite
            self.failed = {}

    def get(self, version=None):
        """The newest loaded version, or ``version``; None when absent."""
        snapshot = self.loaded
        if version is None:
            return snapshot[max(snapshot)] if snapshot else None
        return snapshot.get(version)


def from_model_config(text, prefer_tflite=False):
    """[ModelVersions] from a ModelServerConfig text proto (tensorflow_model_server's --model_config_file).

    A file that does not parse raises ValueError with TF Serving's words for it.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"Error parsing text-format tensorflow.serving.ModelServerConfig: {error}") from None
    models = from_config_list(config.model_config_list, prefer_tflite)
    if not models:
        raise ValueError("`model_config_file` lists no model in model_config_list.")
    return models


def from_config_list(config_list, prefer_tflite=False):
    """[ModelVersions] for the entries of a ModelConfigList proto; ValueError for a name listed twice."""
    models = []
    for entry in config_list.config:
        if any(m.name == entry.name for m in models):
            raise ValueError(f"Illegal to list model {entry.name} multiple times in config list")
        policy = entry.model_version_policy.WhichOneof("policy_choice") or "latest"
        models.append(
            ModelVersions(
                entry.name,
                entry.base_path,
                policy=policy,
                num_versions=entry.model_version_policy.latest.num_versions or 1,
                versions=entry.model_version_policy.specific.versions,
                labels=dict(entry.version_labels),
                prefer_tflite=prefer_tflite,
            )
        )
    return models
