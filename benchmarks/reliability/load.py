"""Load with hot reloads: concurrent clients, every answer checked, new versions exported meanwhile.

``clients`` threads send batch-1 to batch-4 Predict requests for ``seconds``
to a plain and a batching server (alternately), each answer compared with
the in-process Keras result of the version that answered. ``reloads`` new
versions (new weights) are exported into the base path during the run, at
even intervals; each must be answering within the run, with zero failed
requests. Reports p50/p99 latency, throughput and how long each version took
from the end of its export to its first answer.

    python benchmarks/reliability/load.py --clients 32 --seconds 60 --reloads 3
"""

import argparse
import json
import sys
import tempfile
import threading
import time

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import FEATURES, TASKS, export_version, percentiles, ranker, same, start_server  # noqa: E402

from mtl_keras.serving.tensors import fill_content, to_array  # noqa: E402

POOL = np.random.default_rng(7).normal(size=(64, FEATURES)).astype("float32")


def expected_outputs(model):
    out = model.predict(POOL, verbose=0)
    return {task: np.asarray(out[task]) for task in TASKS}


def load(servers, base_path, model, clients=32, seconds=5.0, reloads=1):
    """Runs the load; returns its figures. ``model`` is the Keras model of the version being served (1)."""
    expected = {1: expected_outputs(model)}
    latencies, failures, first_seen, exported = [], [], {}, {}
    lock, stop = threading.Lock(), threading.Event()

    def client(index):
        rng = np.random.default_rng(index)
        channel = grpc.insecure_channel(f"127.0.0.1:{servers[index % len(servers)].port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        mine = []
        while not stop.is_set():
            rows = int(rng.integers(1, 5))
            start = int(rng.integers(0, len(POOL) - rows))
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "ranker"
            fill_content(request.inputs["features"], POOL[start:start + rows])
            began = time.perf_counter()
            try:
                response = stub.Predict(request, timeout=30)
            except grpc.RpcError as error:
                with lock:
                    failures.append(f"{error.code().name}: {error.details()}")
                continue
            mine.append(time.perf_counter() - began)
            version = response.model_spec.version.value
            answer = {k: to_array(v) for k, v in response.outputs.items()}
            want = expected.get(version)
            if want is None or not same(answer, {k: v[start:start + rows] for k, v in want.items()}):
                with lock:
                    failures.append(f"wrong answer from version {version}")
            elif version not in first_seen:
                with lock:
                    first_seen.setdefault(version, time.perf_counter())
        channel.close()
        with lock:
            latencies.extend(mine)

    def reloader():
        for number in range(2, 2 + reloads):
            if stop.wait(seconds / (reloads + 1)):
                return
            new = ranker(seed=number)
            expected[number] = expected_outputs(new)  # known before any server can answer with it
            export_version(new, base_path, version=number)
            exported[number] = time.perf_counter()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=reloader))
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    threads[-1].join()  # an export still running finishes, and its version gets a chance to answer
    deadline = time.perf_counter() + 30
    while any(v not in first_seen for v in exported) and time.perf_counter() < deadline:
        time.sleep(0.1)
    stop.set()
    for thread in threads[:-1]:
        thread.join()
    elapsed = time.perf_counter() - began
    p50, p99 = percentiles(latencies)
    missing = [v for v in exported if v not in first_seen]
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(latencies) + len(failures),
        "failures": len(failures), "failure_examples": failures[:5], "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1), "reloads": len(exported),
        "seconds_from_export_to_first_answer": {v: round(first_seen[v] - exported[v], 2) for v in exported
                                                if v in first_seen},
        "versions_never_served": missing,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--reloads", type=int, default=3)
    args = parser.parse_args(argv)
    base = tempfile.mkdtemp(prefix="load-") + "/ranker"
    model = ranker()
    export_version(model, base, version=1)
    servers = [start_server(base, rest=False), start_server(base, batching=True, rest=False)]
    try:
        print(json.dumps(load(servers, base, model, args.clients, args.seconds, args.reloads), indent=1))
    finally:
        for server in servers:
            server.stop(grace=1)


if __name__ == "__main__":
    main()
