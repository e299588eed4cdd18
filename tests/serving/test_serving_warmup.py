"""Warm-up replay, as TF Serving's saved_model_warmup_util.cc does it: every record of
``assets.extra/tf_serving_warmup_requests`` is run through the version before it serves, and
the count is logged in TF Serving's words."""

import logging
import shutil

import numpy as np
import tensorflow as tf

from conftest import SHARED_DATA
from mtl_keras.serving.servables import WARMUP_FILE, ModelVersions

HALF_PLUS_TWO = SHARED_DATA / "tf_serving_testdata" / "saved_model_half_plus_two_cpu" / "00000123"


def warmup_log(kind, signature):
    from tensorflow_serving.apis import prediction_log_pb2

    entry = prediction_log_pb2.PredictionLog()
    request = getattr(entry, kind).request
    request.model_spec.signature_name = signature
    if kind == "predict_log":
        request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.float32([[1.0], [2.0]])))
    else:
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(2.0)
    return entry.SerializeToString()


class WhenLogged(logging.Handler):
    """Keeps each warm-up message with the versions that were serving when it was logged."""

    def __init__(self, versions):
        super().__init__(logging.INFO)
        self.versions = versions
        self.seen = []

    def emit(self, record):
        if "warmup" in record.getMessage():
            self.seen.append((record.getMessage(), sorted(self.versions.loaded)))


def test_warm_up_records_are_replayed_before_the_version_serves(tmp_path):
    base = tmp_path / "half"
    shutil.copytree(HALF_PLUS_TWO, base / "123")
    (base / "123" / "assets.extra").mkdir()
    with tf.io.TFRecordWriter(str(base / "123" / WARMUP_FILE)) as writer:
        for kind, signature in [("predict_log", "serving_default"), ("predict_log", ""),
                                ("classify_log", "classify_x_to_y"), ("regress_log", "regress_x_to_y")]:
            writer.write(warmup_log(kind, signature))
    versions = ModelVersions("half", str(base))
    logger = logging.getLogger("mtl_keras.serving.servables")
    handler, level = WhenLogged(versions), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        versions.poll()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert versions.get().warmup_records == 4
    ((message, serving),) = handler.seen
    assert "Finished reading warmup data for model at" in message
    assert "Number of warmup records read: 4." in message
    assert serving == []  # logged before version 123 was served (AVAILABLE)
    assert sorted(versions.loaded) == [123]


def test_a_version_without_warmup_records_replays_none(tmp_path):
    shutil.copytree(HALF_PLUS_TWO, tmp_path / "half" / "123")
    versions = ModelVersions("half", str(tmp_path / "half"))
    versions.poll()
    assert versions.get().warmup_records == 0
