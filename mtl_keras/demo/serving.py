"""The demo's serving steps: ``mtl-keras serve`` in the background, the same rows through gRPC and REST."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np

from mtl_keras.demo.training import TASKS

TOLERANCE = 1e-5  # float32 through protobuf and JSON: equal to the printed digits


def free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def start_server(base_path, grpc_port, rest_port, log_path):
    script = os.path.join(os.path.dirname(sys.executable), "mtl-keras")  # the command; else the module
    start = [script] if os.path.exists(script) else [sys.executable, "-m", "mtl_keras.cli"]
    command = start + ["serve", "--model_name", "ranker",
               "--model_base_path", base_path, "--port", str(grpc_port), "--rest_api_port", str(rest_port)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    with open(log_path, "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_until_served(server, port, log_path, timeout=180.0):
    from mtl_keras.serving import PredictClient, ServingError

    client = PredictClient(f"localhost:{port}", "ranker", timeout=2.0)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"mtl-keras demo: the server exited with status {server.returncode}:\n"
                                 + _tail(log_path))
            try:
                available = [v for v, state in client.status().items() if state == "AVAILABLE"]
                if available:
                    return max(available)
            except ServingError:  # not listening yet, or the version still loading
                pass
            time.sleep(0.5)
    finally:
        client.close()
    raise SystemExit(f"mtl-keras demo: the server did not serve the model within {timeout:.0f} s:\n"
                     + _tail(log_path))


def _tail(path, lines=20):
    with open(path, errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


def predict_grpc(port, raw):
    from mtl_keras.serving import PredictClient

    with PredictClient(f"localhost:{port}", "ranker") as client:  # casts each column to the signature's dtype
        return {t: np.asarray(v) for t, v in client.predict(raw).items()}


def predict_rest(port, raw):
    """POST /v1/models/ranker:predict with the columnar ("inputs") JSON body, as curl -d would."""
    body = json.dumps({"signature_name": "serving_default",
                       "inputs": {name: np.asarray(v).tolist() for name, v in raw.items()}}).encode()
    request = urllib.request.Request(f"http://localhost:{port}/v1/models/ranker:predict", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        outputs = json.loads(response.read())["outputs"]
    return {t: np.asarray(v, np.float32) for t, v in outputs.items()}


def compare(local, served):
    """(exit status, a table of every row's prediction per task and channel, with the max gap)."""
    status, lines = 0, []
    for task in TASKS:
        expected = local[task].reshape(-1)
        lines.append(f"  {task}: in process {np.round(expected.astype(np.float64), 5).tolist()}")
        for channel, outputs in served.items():
            got = np.asarray(outputs.get(task, np.full_like(expected, np.nan))).reshape(-1)
            gap = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("inf")
            same = gap <= TOLERANCE
            status = status or (0 if same else 1)
            lines.append(f"  {task}: {channel:<10} {np.round(got.astype(np.float64), 5).tolist()}  max gap {gap:.1e} "
                         + ("(equal)" if same else f"(DIFFERENT: over {TOLERANCE:g})"))
    return status, "\n".join(lines)


def stop_server(server, grace=20.0):
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(grace)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode
