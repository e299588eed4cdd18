"""TF Serving's server tests that start the binary, replayed on ``mtl-keras serve``.

The flags are those tensorflow_model_server_test_base.py passes on every
start (--rest_api_timeout_in_ms, --grpc_socket_path, --grpc_channel_arguments)
plus the test's own: a config file with two models, a monitoring config,
a config that does not parse, config reload, TF Lite models.
"""

import json
import re
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from conftest import SHARED_DATA, cli_server
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

TESTDATA = SHARED_DATA / "tf_serving_testdata"
CONFIG = """model_config_list: {{
  config: {{ name: "{name}", base_path: "{path}", model_platform: "tensorflow" }}
}}"""


def harness_flags(tmp_path):
    return ["--rest_api_port", "0", "--rest_api_timeout_in_ms", "5000",
            f"--grpc_socket_path={tmp_path / 'grpc.sock'}",
            "--grpc_channel_arguments=grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb"]


def verify_predict(address, model_name="default", expected_output=3.0, expected_version=123, output_filter=True):
    """VerifyPredictRequest of TF Serving's test base."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if output_filter:
        request.output_filter.append("y")
    with grpc.insecure_channel(address) as channel:
        result = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 5)
    assert "y" in result.outputs and result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [expected_output]
    assert result.model_spec.version.value == expected_version


def test_good_model_config_with_every_harness_flag(tmp_path):
    """testGoodModelConfig, testGoodGrpcChannelArgs, testPredictUDS and testPrometheusEndpoint in one start."""
    config = (TESTDATA / "good_model_config.txt").read_text()
    config = config.replace("${TEST_HALF_PLUS_TWO_DIR}", str(TESTDATA / "saved_model_half_plus_two_cpu"))
    config = config.replace("${TEST_HALF_PLUS_THREE_DIR}", str(TESTDATA / "saved_model_half_plus_three"))
    (tmp_path / "models.config").write_text(config)
    flags = [*harness_flags(tmp_path), f"--model_config_file={tmp_path / 'models.config'}",
             f"--monitoring_config_file={TESTDATA / 'monitoring_config.txt'}",
             "--prefer_tflite_model=true"]  # accepted; these versions have no model.tflite
    with cli_server(*flags) as (port, line):
        for address in (f"localhost:{port}", f"unix:{tmp_path / 'grpc.sock'}"):
            for output_filter in (True, False):
                verify_predict(address, "half_plus_two", 3.0, output_filter=output_filter)
                verify_predict(address, "half_plus_three", 4.0, output_filter=output_filter)
        rest_port = int(re.search(r"REST on (\d+)", line).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=10) as page:
            text = page.read().decode()
        assert "# TYPE" in text and 'model_name="half_plus_two",status="OK"' in text
        # 2 addresses x 2 output filters, gRPC; each request counted once in each histogram.
        assert ':tensorflow:serving:request_latency_count{model_name="half_plus_two",API="Predict",entrypoint="GRPC"} 4' in text
        assert ':tensorflow:serving:runtime_latency_count{model_name="half_plus_two",API="Predict",runtime="TF1"} 4' in text
        with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/v1/models/half_plus_three", timeout=10) as page:
            assert json.loads(page.read())["model_version_status"][0]["version"] == "123"


@pytest.mark.parametrize("batching", [[], ["--enable_batching"]], ids=["threads", "batching"])
def test_bad_model_fails_the_start_as_tf_servings_server_core(batching):
    """_TestBadModel's model (bad_half_plus_two: a SessionBundle, no SavedModel): tensorflow_model_server
    does not start (ServerCore::WaitUntilModelsAvailable, main.cc), and says why on stdout; with
    batching on (gRPC's asyncio server) too."""
    process = subprocess.run(
        [sys.executable, "-m", "mtl_keras.cli", "serve", "--port", "0", "--model_name", "default",
         f"--model_base_path={TESTDATA / 'bad_half_plus_two'}", *batching],
        capture_output=True, text=True, timeout=120,
    )
    assert process.returncode == 255
    assert ("Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: "
            "{{{name: default version: 123} due to error: NOT_FOUND: Could not find SavedModel .pb or .pbtxt "
            "at supplied export directory path: ") in process.stdout


def test_bad_model_config_fails_with_tf_servings_message(tmp_path):
    """testBadModelConfig: the start fails and stderr names the text-format parse error."""
    process = subprocess.run(
        [sys.executable, "-m", "mtl_keras.cli", "serve", "--port", "0",
         f"--model_config_file={TESTDATA / 'bad_model_config.txt'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert process.returncode != 0
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in process.stderr


def test_model_config_reload(tmp_path):
    """testModelConfigReload: a rewritten config file is polled and served (bounded wait)."""
    config = tmp_path / "model_config.txt"
    config.write_text(CONFIG.format(name="half_plus_two", path=TESTDATA / "saved_model_half_plus_two_cpu"))
    flags = [*harness_flags(tmp_path), f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"]
    with cli_server(*flags) as (port, _):
        verify_predict(f"localhost:{port}", "half_plus_two", 3.0, output_filter=False)
        config.write_text(CONFIG.format(name="half_plus_three", path=TESTDATA / "saved_model_half_plus_three"))
        deadline = time.monotonic() + 15
        while True:
            try:
                verify_predict(f"localhost:{port}", "half_plus_three", 4.0, output_filter=False)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "the new config was not served within 15 s"
                time.sleep(0.2)


def test_predict_on_tflite():
    """testPredictOnTfLite: with prefer_tflite (--prefer_tflite_model=true) model.tflite runs with tf.lite."""
    from mtl_keras.serving.servables import ModelVersions
    from mtl_keras.serving.server import Server

    base = str(TESTDATA / "saved_model_half_plus_two_tflite")
    server = Server([ModelVersions("default", base, prefer_tflite=True)], port=0).start()
    try:
        verify_predict(f"localhost:{server.port}", output_filter=False)
    finally:
        server.stop(grace=1)


def test_channel_arguments_apply_and_monitoring_config_parses():
    """--grpc_channel_arguments reach the gRPC server (a 2000-byte receive limit refuses a bigger request);
    --monitoring_config_file takes TF Serving's MonitoringConfig text and refuses another."""
    from mtl_keras.cli import _channel_arguments
    from mtl_keras.serving.monitoring import parse_monitoring_config
    from mtl_keras.serving.servables import ModelVersions
    from mtl_keras.serving.server import Server

    arguments = _channel_arguments("grpc.max_receive_message_length=2000,grpc.lb_policy_name=grpclb")
    assert arguments == [("grpc.max_receive_message_length", 2000), ("grpc.lb_policy_name", "grpclb")]
    server = Server([ModelVersions("default", str(TESTDATA / "saved_model_half_plus_two_cpu"))], port=0,
                    channel_arguments=arguments).start()
    try:
        verify_predict(f"localhost:{server.port}", output_filter=False)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "default"
        request.inputs["x"].dtype = types_pb2.DT_FLOAT
        request.inputs["x"].float_val.extend([1.0] * 1000)
        with grpc.insecure_channel(f"localhost:{server.port}") as channel:
            with pytest.raises(grpc.RpcError) as error:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 5)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(grace=1)
    assert parse_monitoring_config((TESTDATA / "monitoring_config.txt").read_text()) == (
        True, "/monitoring/prometheus/metrics")
    with pytest.raises(ValueError, match="Error parsing text-format tensorflow.serving.MonitoringConfig"):
        parse_monitoring_config("improperly formatted file")


def test_predict_with_signature_def_on_tflite():
    """testPredictWithSignatureDefOnTfLite: the SignatureDefs in the model's metadata map x to its tensor."""
    from mtl_keras.serving.servables import ModelVersions
    from mtl_keras.serving.server import Server

    base = str(TESTDATA / "saved_model_half_plus_two_tflite_with_sigdef")
    server = Server([ModelVersions("default", base, prefer_tflite=True)], port=0).start()
    try:
        verify_predict(f"localhost:{server.port}", output_filter=False)
    finally:
        server.stop(grace=1)


def test_batching_config_of_tf_servings_tests_and_unix_socket(tmp_path):
    """TF Serving's testdata batching_config.txt on the asyncio host, answering on a Unix socket too."""
    from mtl_keras.serving.batching import parse_batching_parameters
    from mtl_keras.serving.servables import ModelVersions
    from mtl_keras.serving.server import Server

    batching = parse_batching_parameters((TESTDATA / "batching_config.txt").read_text())
    assert (batching["max_batch_size"], batching["num_batch_threads"]) == (128, 8)
    socket = tmp_path / "grpc.sock"
    server = Server([ModelVersions("default", str(TESTDATA / "saved_model_half_plus_two_cpu"))], port=0,
                    batching=batching, socket_path=str(socket)).start()
    try:
        verify_predict(f"unix:{socket}")
        verify_predict(f"localhost:{server.port}", output_filter=False)
    finally:
        server.stop(grace=1)


def test_enable_batching_with_a_parameters_file_through_the_cli(tmp_path):
    """--enable_batching --batching_parameters_file: the file's max_batch_size bounds a request, in
    the batching session's words (a server without batching answers it: half_plus_two takes any rows)."""
    (tmp_path / "batching.txt").write_text("max_batch_size { value: 2 }\nbatch_timeout_micros { value: 1000 }\n")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "default"
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.extend([1.0, 2.0, 3.0])
    request.inputs["x"].tensor_shape.dim.add().size = 3
    request.inputs["x"].tensor_shape.dim.add().size = 1
    flags = ["--model_name", "default", "--model_base_path", str(TESTDATA / "saved_model_half_plus_two_cpu"),
             "--enable_batching", f"--batching_parameters_file={tmp_path / 'batching.txt'}"]
    with cli_server(*flags) as (port, _):
        verify_predict(f"localhost:{port}")  # one row fits
        with grpc.insecure_channel(f"localhost:{port}") as channel:
            try:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, 5)
                raise AssertionError("a 3-row request passed a max_batch_size of 2")
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert error.details() == "Task size 3 is larger than maximum input batch size 2"
