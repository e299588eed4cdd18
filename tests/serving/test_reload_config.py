"""ModelService.HandleReloadConfigRequest through the official stub, as TF Serving answers it."""

import threading
import time

import grpc
import numpy as np
import pytest
from conftest import HOSTS, cli_server, expect
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from mtl_keras import export, models
from mtl_keras.backend import keras
from mtl_keras.serving import PredictClient, ServingError
from mtl_keras.serving.batching import parse_batching_parameters
from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

X = np.random.default_rng(1).normal(size=(3, 6)).astype("float32")


@pytest.fixture(params=sorted(HOSTS))
def two_models(tmp_path, request):
    """A server with "ranker" (versions 1 and 2, the ctr bias set to the version); "ads" exported, not served."""
    model = models.mmoe(keras.Input((6,), name="features"), ["ctr", "cvr"], num_experts=3)
    ranker, ads = str(tmp_path / "ranker"), str(tmp_path / "ads")
    for version in (1, 2):
        model.get_layer("ctr").bias.assign([float(version)])
        export.export_saved_model(model, ranker, version=version)
    export.export_saved_model(model, ads, version=7)
    batching = HOSTS[request.param] and parse_batching_parameters(HOSTS[request.param])
    server = Server([ModelVersions("ranker", ranker)], port=0, batching=batching).start()
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"localhost:{server.port}"))
    yield server, stub, ranker, ads
    server.stop(grace=1)


def reload(stub, text):
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return stub.HandleReloadConfigRequest(request, timeout=30)


def entry(name, path, extra=""):
    return f'config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" {extra} }}'


def client(server, name):
    return PredictClient(f"localhost:{server.port}", name)


def test_reload_adds_a_model_and_keeps_loaded_versions(two_models):
    server, stub, ranker, ads = two_models
    before = server.models.by_name["ranker"].get()
    response = reload(stub, f"model_config_list {{ {entry('ranker', ranker)} {entry('ads', ads)} }}")
    assert response.status.error_code == 0
    assert client(server, "ads").status() == {7: "AVAILABLE"}
    assert client(server, "ads").predict({"features": X})["ctr"].shape == (3, 1)
    assert server.models.by_name["ranker"].get() is before  # same source: not loaded again


def test_reload_applies_a_new_policy_and_labels(two_models):
    server, stub, ranker, _ = two_models
    ranker_client = client(server, "ranker")
    assert ranker_client.status() == {2: "AVAILABLE"}
    newest = ranker_client.predict({"features": X})["ctr"]
    policy = 'model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 }'
    reload(stub, f"model_config_list {{ {entry('ranker', ranker, policy)} }}")
    assert ranker_client.status() == {1: "AVAILABLE"}
    assert ranker_client.metadata()["version"] == 1
    assert not np.allclose(ranker_client.predict({"features": X})["ctr"], newest)  # version 1's ctr bias
    assert server.models.by_name["ranker"].labels == {"stable": 1}


def test_models_left_out_stop_serving(two_models):
    server, stub, _, ads = two_models
    reload(stub, f"model_config_list {{ {entry('ads', ads)} }}")
    with pytest.raises(ServingError, match=r"NOT_FOUND: Servable not found for request: Latest\(ranker\)"):
        client(server, "ranker").predict({"features": X})
    assert client(server, "ads").predict({"features": X})["cvr"].shape == (3, 1)


def test_bad_configs_are_refused_and_serving_goes_on(two_models, tmp_path):
    server, stub, ranker, ads = two_models
    expect(
        lambda: reload(stub, f"model_config_list {{ {entry('ranker', ranker)} {entry('ranker', ads)} }}"),
        grpc.StatusCode.INVALID_ARGUMENT, "Illegal to list model ranker multiple times in config list",
    )
    expect(
        lambda: reload(stub, "custom_model_config {}"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ServerModelConfig type not supported by HandleReloadConfigRequest. Only ModelConfigList is currently supported",
    )
    assert reload(stub, "").status.error_code == 0  # an empty config: no action, as in TF Serving
    assert client(server, "ranker").status() == {2: "AVAILABLE"}
    ghost = str(tmp_path / "ghost")
    expect(
        lambda: reload(stub, f"model_config_list {{ {entry('ranker', ranker)} {entry('ghost', ghost)} }}"),
        grpc.StatusCode.UNKNOWN, "Some models did not become available: {ghost}",
    )
    assert client(server, "ranker").predict({"features": X})["ctr"].shape == (3, 1)


def test_no_request_fails_during_a_reload(two_models):
    server, stub, ranker, ads = two_models
    failures, stop = [], threading.Event()

    def send():
        ranker_client = client(server, "ranker")
        while not stop.is_set():
            try:
                ranker_client.predict({"features": X})
            except ServingError as error:
                failures.append(error)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for extra in ("", "model_version_policy { all {} }", ""):
            reload(stub, f"model_config_list {{ {entry('ranker', ranker, extra)} {entry('ads', ads)} }}")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not failures, failures[:3]


def test_a_watched_config_file_is_applied_when_it_changes(two_models, tmp_path):
    server, _, ranker, ads = two_models
    path = tmp_path / "models.config"
    first = f"model_config_list {{ {entry('ranker', ranker)} }}"
    path.write_text(first)
    server.watch_config_file(str(path), 0.1, first)
    path.write_text(f"model_config_list {{ {entry('ranker', ranker)} {entry('ads', ads)} }}")
    deadline = time.monotonic() + 10
    while "ads" not in server.models.by_name and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client(server, "ads").predict({"features": X})["ctr"].shape == (3, 1)
    path.write_text("model_config_list { config { name: ")  # half written: logged, nothing changes
    time.sleep(0.5)
    assert sorted(server.models.by_name) == ["ads", "ranker"]
    assert client(server, "ranker").predict({"features": X})["ctr"].shape == (3, 1)


def test_cli_polls_the_model_config_file(two_models, tmp_path):
    _, _, ranker, ads = two_models
    path = tmp_path / "models.config"
    path.write_text(f"model_config_list {{ {entry('ranker', ranker)} }}")
    with cli_server("--model_config_file", str(path), "--model_config_file_poll_wait_seconds", "0.2") as (port, _):
        path.write_text(f"model_config_list {{ {entry('ranker', ranker)} {entry('ads', ads)} }}")
        ads_client, deadline = PredictClient(f"localhost:{port}", "ads"), time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                assert ads_client.status() == {7: "AVAILABLE"}
                break
            except ServingError:
                time.sleep(0.1)
        assert ads_client.predict({"features": X})["ctr"].shape == (3, 1)
