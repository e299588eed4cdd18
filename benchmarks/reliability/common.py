"""What the reliability runs share: a small exported ranker, servers on loopback, answer checks."""

import os
import pathlib

import numpy as np

from mtl_keras import export, models
from mtl_keras.backend import keras
from mtl_keras.serving.batching import parse_batching_parameters
from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

TESTDATA = pathlib.Path(os.environ.get("MTL_KERAS_DATA", pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"))
TESTDATA = TESTDATA / "tf_serving_testdata"
FEATURES = 6
TASKS = ("ctr", "cvr")
BATCHING = "max_batch_size { value: 16 }\nbatch_timeout_micros { value: 2000 }\nmax_enqueued_batches { value: 1000 }\n"


def ranker(seed=0):
    keras.utils.set_random_seed(seed)
    return models.mmoe(keras.Input((FEATURES,), name="features"), list(TASKS), num_experts=3)


def export_version(model, base_path, version=None):
    return export.export_saved_model(model, str(base_path), version=version)


def start_server(base_path, batching=False, rest=True, poll_seconds=0.2, extra_models=()):
    """A server on 127.0.0.1 with the ranker at ``base_path`` (and TF Serving's half_plus_two as "default")."""
    served = [ModelVersions("ranker", str(base_path)),
              ModelVersions("default", str(TESTDATA / "saved_model_half_plus_two_cpu")), *extra_models]
    return Server(served, port=0, rest_port=0 if rest else None, poll_seconds=poll_seconds,
                  batching=parse_batching_parameters(BATCHING) if batching else None).start()


def same(answer, expected, atol=1e-5):
    """Whether two {output: array} agree (NaN where NaN)."""
    if set(answer) != set(expected):
        return False
    return all(np.asarray(answer[k]).shape == np.asarray(expected[k]).shape
               and np.allclose(answer[k], expected[k], atol=atol, equal_nan=True) for k in expected)


def percentiles(seconds):
    values = np.asarray(seconds) * 1000
    return (float(np.percentile(values, 50)), float(np.percentile(values, 99))) if len(values) else (0.0, 0.0)
