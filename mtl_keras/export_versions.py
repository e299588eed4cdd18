"""Atomic SavedModel versions: ``base_path/<version>/`` written whole, with warm-up records.

A version is written to a temporary folder in ``base_path`` and renamed into
place, so a server polling the folder never sees half a version;
``assets.extra/tf_serving_warmup_requests`` holds a few ``PredictionLog``
records TensorFlow Serving replays before it answers.
"""

import os
import shutil
import tempfile

import numpy as np

from mtl_keras.backend import tf

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_TEMP_PREFIX = ".export-"


def write_version(base_path, version, save, warmup_inputs, warmup_batch_size, warmup_records):
    """Writes ``base_path/<version>`` whole or not at all.

    ``save(folder)`` and the warm-up records go to a temporary folder, renamed
    into place, so a server never sees half a version.

    Args:
        base_path: the model's folder, the versions below it.
        version: an int, or None for the latest + 1.
        save: called with the folder to write the SavedModel into.
        warmup_inputs: [(name, TensorSpec)] of the warm-up requests.
        warmup_batch_size, warmup_records: batch size and count of the warm-up
            requests (0 records: none).

    Returns:
        The version's path.

    Raises:
        FileExistsError: when the version appeared during the export.

    Example:
    >>> path = write_version("models/plain", None, lambda folder: tf.saved_model.save(tf.Module(), folder),
    ...                      warmup_inputs=[], warmup_batch_size=1, warmup_records=0)
    >>> os.path.basename(path), os.path.exists(os.path.join(path, "saved_model.pb"))
    ('1', True)
    """
    os.makedirs(base_path, exist_ok=True)
    version = _version(base_path, version)
    target = os.path.join(base_path, str(version))
    temp = tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=base_path)
    try:
        save(temp)
        _write_warmup(temp, warmup_inputs, warmup_batch_size, warmup_records)
        if os.path.exists(target):
            raise FileExistsError(f"`version` {version} appeared in {base_path} during the export.")
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return target


def _version(base_path, version):
    if version is None:
        existing = [int(n) for n in os.listdir(base_path) if n.isdigit()]
        return max(existing, default=0) + 1
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"`version` must be a non-negative integer or None; got {version!r}.")
    if any(n.isdigit() and int(n) == version for n in os.listdir(base_path)):
        raise FileExistsError(f"`version` {version} already exists in {base_path}.")
    return int(version)


def _write_warmup(folder, inputs, batch_size, records):
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    os.makedirs(os.path.join(folder, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, WARMUP_FILE)) as writer:
        for _ in range(records):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name="serving_default")
            )
            for name, spec in inputs:
                shape = [batch_size] + [1 if d is None else d for d in spec.shape[1:]]
                if spec.dtype == tf.string:
                    value = np.full(shape, b"unseen", dtype=object)  # OOV: every model can answer it
                else:
                    value = np.zeros(shape, spec.dtype.as_numpy_dtype)
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
