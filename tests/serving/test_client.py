"""PredictClient sends what the signature expects (dtypes and shapes from GetModelMetadata, read once and
again after a version change), names the input in its errors, builds tf.Examples for Classify / Regress /
predict_examples, closes as a context manager; the server stays as strict as TF Serving."""

import shutil
import time

import grpc
import numpy as np
import pytest
from conftest import SHARED_DATA
from tensorflow_serving.apis import predict_pb2

from mtl_keras.backend import tf
from mtl_keras.serving import PredictClient, ServingError
from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server
from mtl_keras.serving.signature_inputs import to_examples

HALF_PLUS_TWO = SHARED_DATA / "tf_serving_testdata" / "saved_model_half_plus_two_cpu" / "00000123"


class _IdsTimesTwo(tf.Module):
    """A version whose input x is int64 [B] (half_plus_two's is float [B, 1])."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="x")])
    def serve(self, x):
        return {"y": tf.cast(x, tf.float32) * 2.0}


@pytest.fixture
def served(tmp_path):
    base = tmp_path / "m"
    shutil.copytree(HALF_PLUS_TWO, base / "1")
    server = Server([ModelVersions("m", str(base))], port=0, poll_seconds=0.1).start()
    yield server, base
    server.stop(grace=0)


def test_casts_arrays_lists_and_scalars_to_the_signature_and_names_the_input(served):
    server, _ = served
    with PredictClient(f"localhost:{server.port}", "m") as client:
        # x is float32 [B, 1]: float64 [N], int lists, a Python scalar are all sent as it expects
        np.testing.assert_allclose(client.predict({"x": np.array([2.0, 4.0])})["y"], [[3.0], [4.0]])
        np.testing.assert_allclose(client.predict({"x": [2, 4]})["y"], [[3.0], [4.0]])
        np.testing.assert_allclose(client.predict({"x": 2})["y"], [[3.0]])
        with pytest.raises(ValueError, match=r"Input 'x' of signature 'serving_default' \(expects float32 shape "
                                             r"\[None, 1\]\): got strings"):
            client.predict({"x": ["a"]})
        with pytest.raises(ValueError, match=r"Input 'x' .*: got shape \[2, 2\]"):
            client.predict({"x": [[1, 2], [3, 4]]})
        with pytest.raises(ValueError, match=r"takes inputs \['x'\]; got \['z'\] \(unknown: \['z'\], missing: \['x'\]\)"):
            client.predict({"z": [1.0]})
        with pytest.raises(ValueError, match=r"has no signature 'nope'"):
            client.predict({"x": [1.0]}, signature_name="nope")
        # Classify / Regress: columns as tf.Examples, x as float (the predict signature's kind) though ints
        labels, scores = client.classify({"x": [2, 4]}, signature_name="classify_x_to_y")
        np.testing.assert_allclose(scores, [[3.0], [4.0]])
        assert labels.shape == (2, 1)
        np.testing.assert_allclose(client.regress([{"x": 2}, {"x": 6}], signature_name="regress_x_to_y"), [3.0, 5.0])
    with pytest.raises(ValueError, match="closed channel"):  # closed on leaving the with block
        client.status()


def test_the_server_stays_strict(served):
    """A float64 tensor sent by hand is refused, as TF Serving refuses it."""
    server, _ = served
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[2.0]], np.float64)))
    with PredictClient(f"localhost:{server.port}", "m") as client:
        with pytest.raises(ServingError) as error:
            client._call(client.predictions.Predict, request)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "to be float but double is provided" in error.value.message


def test_metadata_read_once_and_again_after_a_version_change(served, monkeypatch):
    server, base = served
    with PredictClient(f"localhost:{server.port}", "m") as client:
        calls = []
        fetch = client.metadata
        monkeypatch.setattr(client, "metadata", lambda version=None: calls.append(version) or fetch(version))
        for _ in range(3):
            client.predict({"x": [1.0]})
        assert calls == [None]
        module = _IdsTimesTwo()
        tf.saved_model.save(module, str(base.parent / "v2"), signatures={"serving_default": module.serve})
        (base.parent / "v2").rename(base / "2")  # whole, as export_saved_model writes a version
        deadline = time.time() + 20
        while server.models.by_name["m"].get() is None or server.models.by_name["m"].get().version != 2:
            assert time.time() < deadline
            time.sleep(0.05)
        # Cast for version 1 (float [1, 1]), refused by version 2 (int64 [B]): re-read, re-cast, sent again.
        np.testing.assert_allclose(client.predict({"x": [3, 5]})["y"], [6.0, 10.0])
        assert calls == [None, None]
        with pytest.raises(ValueError, match=r"Input 'x' .*expects int64 .*non-integral value 1.5"):
            client.predict({"x": [1.5]})


def test_to_examples_kinds_and_missing_values():
    rows = to_examples({"price": [1, None], "user": ["u1", "u2"], "clicks": [[3, 4], []]},
                       {"price": "float", "user": "string", "clicks": "int"})
    first, second = (e.features.feature for e in rows)
    assert list(first["price"].float_list.value) == [1.0] and list(first["clicks"].int64_list.value) == [3, 4]
    assert list(second["user"].bytes_list.value) == [b"u2"]
    assert "price" not in second and "clicks" not in second  # missing: left out, as tf.Example says it
    with pytest.raises(ValueError, match=r"Feature 'clicks' expects int values"):
        to_examples({"clicks": [1.5]}, {"clicks": "int"})
