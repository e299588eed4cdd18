"""The local server through TF Serving's official stubs (PredictClient)."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conftest import HOSTS, as_feed, build, cli_server, expect, half_plus_two_script
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from mtl_keras import export, models
from mtl_keras.backend import keras
from mtl_keras.serving import PredictClient, ServingError
from mtl_keras.serving.batching import parse_batching_parameters
from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")


# Batching on switches gRPC to the asyncio host (hosts.AsyncioGrpc): every served test runs on both hosts.
@pytest.fixture(params=sorted(HOSTS))
def served(tmp_path, request):
    model = models.mmoe(keras.Input((6,), name="features"), ["ctr", "cvr"], num_experts=3)
    base = str(tmp_path / "ranker")
    export.export_saved_model(model, base)
    batching = HOSTS[request.param] and parse_batching_parameters(HOSTS[request.param])
    server = Server([ModelVersions("ranker", base)], port=0, poll_seconds=0.2, batching=batching).start()
    client = PredictClient(f"localhost:{server.port}", "ranker")
    yield model, base, server, client
    client.close()
    server.stop(grace=1)


def raw_stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"localhost:{server.port}"))


def request(**inputs):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "ranker"
    for name, value in inputs.items():
        req.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return req


def wrap_model_call(server, wrapper):
    """Serves ``wrapper(function)`` in place of the ranker's serving_default function."""
    servable = server.models.by_name["ranker"].get()
    function, specs, outputs = servable.signatures["serving_default"]
    servable.signatures["serving_default"] = (wrapper(function), specs, outputs)


def test_predict_equals_the_keras_model(served):
    model, _, _, client = served
    out = client.predict({"features": X})
    keras_out = model.predict(X, verbose=0)
    assert sorted(out) == ["ctr", "cvr"]
    for task in ("ctr", "cvr"):
        np.testing.assert_allclose(out[task], keras_out[task], atol=1e-5)
    assert list(client.predict({"features": X}, output_filter=["cvr"])) == ["cvr"]
    assert list(client.predict({"features": X}, signature_name="ctr")) == ["ctr"]
    empty = client.predict({"features": X[:0]})
    assert empty["ctr"].shape == (0, 1)
    nan_rows = np.full((2, 6), np.nan, "float32")
    nan = client.predict({"features": nan_rows})  # served as the model computes it, no crash
    np.testing.assert_allclose(nan["ctr"], model.predict(nan_rows, verbose=0)["ctr"], equal_nan=True)
    examples = [
        tf.train.Example(features=tf.train.Features(feature={
            "features": tf.train.Feature(float_list=tf.train.FloatList(value=row))
        })).SerializeToString()
        for row in X
    ]
    parsed = client.predict({"examples": np.array(examples, dtype=object)}, signature_name="predict_examples")
    np.testing.assert_allclose(parsed["ctr"], keras_out["ctr"], atol=1e-5)  # string inputs take the same path


def test_metadata_and_status(served):
    _, _, _, client = served
    meta = client.metadata()
    assert meta["version"] == 1
    assert {"serving_default", "ctr", "cvr", "predict_examples"} <= set(meta["signature_def"])
    assert set(meta["signature_def"]["serving_default"].outputs) == {"ctr", "cvr"}
    assert client.status() == {1: "AVAILABLE"}
    with pytest.raises(ServingError) as error:
        client.status(version=5)
    assert error.value.code == grpc.StatusCode.NOT_FOUND
    assert error.value.message == "Could not find version 5 of model ranker"


def test_predict_checks_in_tf_serving_order(served):
    _, _, server, _ = served
    stub = raw_stub(server)
    INVALID = grpc.StatusCode.INVALID_ARGUMENT
    expect(lambda: stub.Predict(predict_pb2.PredictRequest()), INVALID, "Missing ModelSpec")
    no_name = predict_pb2.PredictRequest()
    no_name.model_spec.signature_name = "serving_default"
    expect(lambda: stub.Predict(no_name), INVALID, "ModelSpec has no name specified.")
    label = request(features=X)
    label.model_spec.version_label = "canary"
    expect(lambda: stub.Predict(label), INVALID, "Unrecognized servable version label: canary")
    other = request(features=X)
    other.model_spec.name = "ads"
    expect(lambda: stub.Predict(other), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(ads)")
    old = request(features=X)
    old.model_spec.version.value = 9
    expect(lambda: stub.Predict(old), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Specific(ranker, 9)")
    bad_signature = request(features=X)
    bad_signature.model_spec.signature_name = "score"
    expect(lambda: stub.Predict(bad_signature), grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "score" not found.')
    expect(
        lambda: stub.Predict(request(features=X, extra=X)), INVALID,
        "input size does not match signature: 2!=1 len({extra,features}) != len({features}). "
        "Sent extra: {extra}. Missing but required: {}.",
    )
    expect(lambda: stub.Predict(request(feature=X)), INVALID,
           "input tensor alias not found in signature: feature. Inputs expected to be in the set {features}.")
    broken = request(features=X)
    broken.inputs["features"].tensor_content = b"\x00\x01\x02"
    expect(lambda: stub.Predict(broken), INVALID, "tensor parsing error: features")
    filtered = request(features=X)
    filtered.output_filter.append("like")
    expect(lambda: stub.Predict(filtered), INVALID,
           "output tensor alias not found in signature: like Outputs expected to be in the set {ctr,cvr}.")
    twice = request(features=X)
    twice.output_filter.extend(["ctr", "ctr"])
    expect(lambda: stub.Predict(twice), INVALID, "duplicate output tensor alias: ctr")
    expect(lambda: stub.Predict(request(features=X.astype("float64"))), INVALID,
           "Expects arg[0] to be float but double is provided")
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request(features=np.zeros((2, 5), "float32")))
    assert error.value.code() == INVALID
    huge = request(features=X[:1])
    huge.inputs["features"].tensor_shape.dim[0].size = 10**9
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(huge)
    assert error.value.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, INVALID)
    assert raw_stub(server).Predict(request(features=X)).model_spec.version.value == 1  # still answering


def test_metadata_checks_and_classify_without_model_spec(served):
    _, _, server, _ = served
    stub = raw_stub(server)
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "ranker"
    expect(lambda: stub.GetModelMetadata(req), grpc.StatusCode.INVALID_ARGUMENT,
           "GetModelMetadataRequest must specify at least one metadata_field")
    req.metadata_field.append("version")
    expect(lambda: stub.GetModelMetadata(req), grpc.StatusCode.INVALID_ARGUMENT, "Metadata field version is not supported")
    from tensorflow_serving.apis import classification_pb2

    # Classify is served (SERVING.md, corrected): TF Serving's first check answers an empty request.
    expect(lambda: stub.Classify(classification_pb2.ClassificationRequest()), grpc.StatusCode.INVALID_ARGUMENT,
           "Missing ModelSpec")


def test_hot_reload_without_failed_requests(served):
    model, base, _, client = served
    failures, stop = [], threading.Event()

    def hammer():
        mine = PredictClient(f"localhost:{served[2].port}", "ranker")
        while not stop.is_set():
            try:
                mine.predict({"features": X[:2]})
            except ServingError as error:
                failures.append(error)
        mine.close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    model.get_layer("ctr").bias.assign([3.0])
    export.export_saved_model(model, base)
    deadline = time.time() + 5.0
    while time.time() < deadline and client.status() != {2: "AVAILABLE"}:
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert client.status() == {2: "AVAILABLE"}
    assert client.metadata()["version"] == 2
    np.testing.assert_allclose(client.predict({"features": X})["ctr"], model.predict(X, verbose=0)["ctr"], atol=1e-5)
    assert not failures, failures[:3]


def test_a_corrupt_version_is_skipped(served):
    model, base, _, client = served
    os.makedirs(os.path.join(base, "2"))
    with open(os.path.join(base, "2", "saved_model.pb"), "wb") as handle:
        handle.write(b"not a saved model")
    time.sleep(1.0)
    assert client.status() == {1: "AVAILABLE"}
    assert client.predict({"features": X})["ctr"].shape == (5, 1)
    shutil.rmtree(os.path.join(base, "2"))


def rest_call(port, path, body=None):
    import json
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def rest_served(tmp_path):
    model = models.mmoe(keras.Input((6,), name="features"), ["ctr", "cvr"], num_experts=3)
    base = str(tmp_path / "ranker")
    export.export_saved_model(model, base)
    server = Server([ModelVersions("ranker", base)], port=0, rest_port=0, poll_seconds=0.2).start()
    yield model, server
    server.stop(grace=1)


def test_rest_row_and_columnar_formats_answer_like_grpc(rest_served):
    model, server = rest_served
    port = server.rest.port
    keras_out = model.predict(X, verbose=0)
    code, body = rest_call(port, "/v1/models/ranker:predict", {"instances": X.tolist()})
    assert code == 200 and len(body["predictions"]) == 5
    np.testing.assert_allclose([row["ctr"] for row in body["predictions"]], keras_out["ctr"], atol=1e-5)
    code, body = rest_call(port, "/v1/models/ranker/versions/1:predict", {"inputs": {"features": X.tolist()}})
    assert code == 200
    np.testing.assert_allclose(body["outputs"]["cvr"], keras_out["cvr"], atol=1e-5)
    code, body = rest_call(port, "/v1/models/ranker:predict", {"signature_name": "ctr", "inputs": X.tolist()})
    np.testing.assert_allclose(body["outputs"], keras_out["ctr"], atol=1e-5)  # one output: its name is dropped
    code, body = rest_call(port, "/v1/models/ranker")
    assert code == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    code, body = rest_call(port, "/v1/models/ranker/metadata")
    assert code == 200 and "serving_default" in body["metadata"]["signature_def"]["signature_def"]


def test_rest_errors_map_to_http_codes(rest_served):
    _, server = rest_served
    port = server.rest.port
    assert rest_call(port, "/v1/models/ads:predict", {"instances": X.tolist()}) == (
        404, {"error": "Servable not found for request: Latest(ads)"})
    assert rest_call(port, "/v1/models/ranker:predict", {"signature_name": "score", "instances": X.tolist()}) == (
        400, {"error": 'Serving signature name: "score" not found in signature def'})  # REST's words, not gRPC's
    code, body = rest_call(port, "/v1/models/ranker:predict", {"instances": X.tolist(), "inputs": X.tolist()})
    assert code == 400 and "expecting only one of 'inputs' or 'instances' keys to exist" in body["error"]
    code, body = rest_call(port, "/v1/models/ranker:predict", {"instances": [[1.0, 2.0]]})
    assert code == 400
    assert rest_call(port, "/v1/models/ranker/versions/4")[0] == 404


def test_batching_server_refuses_what_tf_servings_batching_session_refuses(tmp_path):
    """Over gRPC: more rows than max_batch_size (INVALID_ARGUMENT), and a signature with an output
    lacking the batch dimension (FAILED_PRECONDITION), which the plain server answers."""

    class Stats(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def serve(self, x):
            return {"y": 2 * x, "mean": tf.reduce_mean(x)}

    module = Stats()
    tf.saved_model.save(module, str(tmp_path / "stats" / "1"), signatures={"serving_default": module.serve})
    batching = parse_batching_parameters("max_batch_size { value: 4 }\nbatch_timeout_micros { value: 1000 }\n")
    x = np.ones((2, 2), "float32")
    with_batching = Server([ModelVersions("stats", str(tmp_path / "stats"))], port=0, batching=batching).start()
    plain = Server([ModelVersions("stats", str(tmp_path / "stats"))], port=0).start()
    try:
        client = PredictClient(f"localhost:{with_batching.port}", "stats")
        with pytest.raises(ServingError) as failed:
            client.predict({"x": x})
        assert failed.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert failed.value.message == "Batched output tensor has 0 dimensions"
        with pytest.raises(ServingError) as refused:
            client.predict({"x": np.ones((5, 2), "float32")})
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.message == "Task size 5 is larger than maximum input batch size 4"
        client.close()
        answer = PredictClient(f"localhost:{plain.port}", "stats").predict({"x": x})
        assert float(answer["mean"]) == 1.0 and answer["y"].tolist() == [[2.0, 2.0]] * 2
    finally:
        with_batching.stop(grace=1)
        plain.stop(grace=1)


def test_batching_merges_concurrent_requests_and_splits_results(tmp_path):
    model = models.mmoe(keras.Input((6,), name="features"), ["ctr", "cvr"], num_experts=3)
    base = str(tmp_path / "ranker")
    export.export_saved_model(model, base)
    parameters = parse_batching_parameters(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 20000 }\n"
        "max_enqueued_batches { value: 10 }\nallowed_batch_sizes: 32\nallowed_batch_sizes: 64\n"
        "enable_large_batch_splitting { value: true }\n"
    )
    server = Server([ModelVersions("ranker", base)], port=0, batching=parameters).start()
    calls = []

    def counting(function):  # records the size of every model call
        def call(**inputs):
            calls.append(len(inputs["features"]))
            return function(**inputs)

        return call

    wrap_model_call(server, counting)
    rng = np.random.default_rng(5)
    inputs = [rng.normal(size=(int(rng.integers(1, 4)), 6)).astype("float32") for _ in range(32)]
    results = [None] * 32

    def one(i):
        client = PredictClient(f"localhost:{server.port}", "ranker")
        results[i] = client.predict({"features": inputs[i]})
        client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    merged = list(calls)
    # A full batch runs on its own: 64 rows fit the event loop's path, 3000 rows (72 kB, more than
    # max_batch_size: allowed by enable_large_batch_splitting) the thread pool's.
    client = PredictClient(f"localhost:{server.port}", "ranker")
    inputs += [rng.normal(size=(rows, 6)).astype("float32") for rows in (64, 3000)]
    results += [client.predict({"features": x}) for x in inputs[-2:]]
    client.close()
    server.stop(grace=1)
    for x, out in zip(inputs, results):
        want = model.predict(x, verbose=0)
        np.testing.assert_allclose(out["ctr"], want["ctr"], atol=1e-5)
        assert out["cvr"].shape == (len(x), 1)
    assert len(merged) < 32, merged
    assert all(size in (32, 64) for size in merged), merged  # padded to allowed sizes
    assert calls[len(merged):] == [64, 3000]


def test_batching_parameters_are_checked():
    with pytest.raises(ValueError, match="allowed_batch_sizes"):
        parse_batching_parameters("max_batch_size { value: 64 }\nallowed_batch_sizes: 32\n")


def test_model_config_file_policies_and_labels(tmp_path):
    from mtl_keras.serving.servables import from_model_config

    model = models.mmoe(keras.Input((6,), name="features"), ["ctr", "cvr"], num_experts=3)
    ranker, ads = str(tmp_path / "ranker"), str(tmp_path / "ads")
    for version in (1, 2, 3):
        model.get_layer("ctr").bias.assign([float(version)])
        export.export_saved_model(model, ranker, version=version)
    export.export_saved_model(model, ads, version=4)
    config = f"""
    model_config_list {{
      config {{ name: "ranker" base_path: "{ranker}" model_platform: "tensorflow"
               model_version_policy {{ specific {{ versions: 1 versions: 3 }} }}
               version_labels {{ key: "stable" value: 1 }} version_labels {{ key: "canary" value: 3 }} }}
      config {{ name: "ads" base_path: "{ads}" model_platform: "tensorflow"
               model_version_policy {{ all {{}} }} }}
    }}"""
    server = Server(from_model_config(config), port=0).start()
    try:
        client = PredictClient(f"localhost:{server.port}", "ranker")
        assert client.status() == {1: "AVAILABLE", 3: "AVAILABLE"}
        assert PredictClient(f"localhost:{server.port}", "ads").status() == {4: "AVAILABLE"}
        stub = raw_stub(server)
        for label, version in (("stable", 1), ("canary", 3)):
            req = request(features=X)
            req.model_spec.version_label = label
            assert stub.Predict(req).model_spec.version.value == version
        assert client.predict({"features": X}, version=1)["ctr"].shape == (5, 1)
        with pytest.raises(ServingError, match="Specific\\(ranker, 2\\)"):
            client.predict({"features": X}, version=2)
    finally:
        server.stop(grace=1)


def test_stop_lets_in_flight_requests_finish_and_refuses_new_ones(served):
    model, _, server, client = served
    entered = threading.Event()

    def slow(function):
        def call(**inputs):
            entered.set()
            time.sleep(1.0)
            return function(**inputs)

        return call

    wrap_model_call(server, slow)
    answers = []
    in_flight = threading.Thread(target=lambda: answers.append(client.predict({"features": X[:1]})))
    in_flight.start()
    assert entered.wait(10)
    server.stop(grace=10)  # what SIGTERM runs
    in_flight.join()
    np.testing.assert_allclose(answers[0]["ctr"], model.predict(X[:1], verbose=0)["ctr"], atol=1e-5)
    with pytest.raises(ServingError) as refused:
        client.predict({"features": X[:1]})
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_stop_past_its_deadline_ends_the_process_with_every_threads_stack(tmp_path):
    """serve_until_signal(deadline_seconds=...): a stop that hangs (here gRPC's) ends the process
    with status 1 and the stacks of its threads, instead of outliving SIGTERM. Mutation caught:
    the watchdog not started (the process is still running when the test gives up)."""
    script = half_plus_two_script(tmp_path, """
        def hang(grace):
            time.sleep(600)

        server.grpc.stop = hang
        server.serve_until_signal(deadline_seconds=1.0, ready=lambda: print("serving", flush=True))
    """)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "serving\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 1
        stderr = process.stderr.read()
        assert "the server did not stop within 1.0 s of the signal" in stderr
        assert "in hang" in stderr and "in serve_until_signal" in stderr
    finally:
        if process.poll() is None:
            process.kill()


def test_a_signal_sent_from_ready_stops_the_server(tmp_path):
    """serve_until_signal(ready=...) runs ready() once SIGTERM is handled: a SIGTERM sent from
    there (as a supervisor may, the moment the start-up line appears) stops the server, status 0.
    Mutation caught: ready() before the handlers (the default action kills the process: -15)."""
    script = half_plus_two_script(tmp_path, """
        server.serve_until_signal(grace=1.0, deadline_seconds=30.0, ready=lambda: os.kill(os.getpid(), signal.SIGTERM))
        print("stopped", flush=True)
    """)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr[-3000:]


def test_a_signal_delivered_to_another_thread_stops_the_server(tmp_path):
    """The kernel may hand a process's SIGTERM to any thread (gRPC's, TensorFlow's); CPython then
    only flags it, and the handler runs when the main thread next enters the interpreter. Here
    the signal goes to a helper thread while the main thread waits. Mutation caught: an untimed
    ``done.wait()`` (the main thread never wakes: still running after 60 s)."""
    script = half_plus_two_script(tmp_path, """
        import threading

        def to_this_thread():
            time.sleep(0.5)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

        server.serve_until_signal(grace=1.0, deadline_seconds=30.0,
                                  ready=lambda: threading.Thread(target=to_this_thread).start())
        print("stopped", flush=True)
    """)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr[-3000:]


def test_a_call_past_its_deadline_leaves_the_server_answering(served):
    model, _, server, client = served
    slow_calls = []

    def slow_once(function):  # the first call outlives the client's deadline
        def call(**inputs):
            if not slow_calls:
                slow_calls.append(True)
                time.sleep(0.5)
            return function(**inputs)

        return call

    wrap_model_call(server, slow_once)
    hurried = PredictClient(f"localhost:{server.port}", "ranker", timeout=0.1)
    with pytest.raises(ServingError) as late:
        hurried.predict({"features": X[:1]})
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    hurried.close()
    time.sleep(0.6)  # the abandoned call's batch finishes meanwhile
    np.testing.assert_allclose(client.predict({"features": X})["ctr"], model.predict(X, verbose=0)["ctr"], atol=1e-5)


def test_cli_serve_answers_and_stops_cleanly_on_sigterm(tmp_path):
    model = models.mmoe(keras.Input((6,), name="features"), ["ctr", "cvr"], num_experts=3)
    base = str(tmp_path / "ranker")
    export.export_saved_model(model, base)
    args = ("--model_name", "ranker", "--model_base_path", base, "--rest_api_port", "0",
            "--tensorflow_intra_op_parallelism", "1", "--tensorflow_inter_op_parallelism", "2")
    with cli_server(*args) as (port, line):
        assert "TensorFlow threads intra 1, inter 2" in line
        client = PredictClient(f"localhost:{port}", "ranker")
        np.testing.assert_allclose(client.predict({"features": X})["ctr"], model.predict(X, verbose=0)["ctr"], atol=1e-5)


@pytest.mark.parametrize("name", ["shared_bottom", "mmoe", "ple", "snr", "star", "esmm", "cross_stitch", "custom"])
def test_every_builder_served_equals_keras(name, tmp_path):
    model, data = build(name)
    base = str(tmp_path / name)
    export.export_saved_model(model, base)
    server = Server([ModelVersions(name, base)], port=0).start()
    try:
        out = PredictClient(f"localhost:{server.port}", name).predict(as_feed(data))
        keras_out = model.predict(data, verbose=0)
        assert sorted(out) == sorted(model.task_names)
        for task in model.task_names:
            np.testing.assert_allclose(out[task], keras_out[task], atol=1e-5)
    finally:
        server.stop(grace=1)


def test_long_messages_are_truncated_and_garbage_is_refused(served):
    _, _, server, _ = served
    stub = raw_stub(server)
    alias = "f" * 2000
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request(**{alias: X}))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(error.value.details()) == 1024 and error.value.details().endswith("...TRUNCATED")
    channel = grpc.insecure_channel(f"localhost:{server.port}")
    garbage = channel.unary_unary(
        "/tensorflow.serving.PredictionService/Predict",
        request_serializer=lambda b: b, response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError):
        garbage(b"\xff\xfe\x00garbage" * 10, timeout=10)
    assert stub.Predict(request(features=X)).model_spec.version.value == 1  # still answering
