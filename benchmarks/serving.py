"""Serving overhead and batching gain of the local server, measured side by side.

The server runs in its own process (``mtl-keras serve``), as deployed; the
clients run here.

1. Batch-1 latency: gRPC Predict through PredictClient vs calling the loaded
   SavedModel's signature in-process (p50, p99; the overhead is their gap).
2. Throughput of 32 concurrent clients sending batch-1 requests, without and
   with dynamic batching.

    python benchmarks/serving.py [--seconds 5] [--out FILE]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf

from mtl_keras import export, models
from mtl_keras.backend import keras
from mtl_keras.serving import PredictClient


def percentile(samples, q):
    return float(np.percentile(np.array(samples) * 1000, q))


def latencies(call, count):
    for _ in range(20):
        call()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def throughput(port, clients, seconds, x):
    done, stop = [0] * clients, threading.Event()

    def worker(i):
        client = PredictClient(f"localhost:{port}", "ranker")
        while not stop.is_set():
            client.predict({"features": x})
            done[i] += 1
        client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def start_server(base, batching_file=None):
    command = [sys.executable, "-m", "mtl_keras.cli", "serve", "--model_name", "ranker",
               "--model_base_path", base, "--port", "0"]
    if batching_file:
        command += ["--enable_batching", "--batching_parameters_file", batching_file]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    port = int(re.search(r"gRPC on (\d+)", process.stdout.readline()).group(1))
    return process, port


def stop_server(process):
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = models.mmoe(keras.Input((256,), name="features"), ["ctr", "cvr", "like", "share"],
                        num_experts=8, expert_units=(256,), tower_units=(64,))
    base = tempfile.mkdtemp(prefix="serving-bench-")
    path = export.export_saved_model(model, base)
    x = np.random.default_rng(0).normal(size=(1, 256)).astype("float32")
    signature = tf.saved_model.load(path).signatures["serving_default"]
    plain, port = start_server(base)
    client = PredictClient(f"localhost:{port}", "ranker")
    local = latencies(lambda: signature(features=tf.constant(x)), args.calls)
    remote = latencies(lambda: client.predict({"features": x}), args.calls)
    unbatched = throughput(port, 32, args.seconds, x)
    client.close()
    stop_server(plain)
    batching_file = os.path.join(base, "batching_parameters.txt")
    with open(batching_file, "w") as handle:
        handle.write("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 2000 }\n"
                     "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n")
    batched_server, port = start_server(base, batching_file)
    batched = throughput(port, 32, args.seconds, x)
    stop_server(batched_server)
    result = {
        "in_process_p50_ms": percentile(local, 50), "in_process_p99_ms": percentile(local, 99),
        "grpc_p50_ms": percentile(remote, 50), "grpc_p99_ms": percentile(remote, 99),
        "p50_overhead_ms": percentile(remote, 50) - percentile(local, 50),
        "unbatched_rps": unbatched, "batched_rps": batched, "batching_gain": batched / unbatched,
    }
    print("MMoE 256 -> 8x256 experts, 4 heads; batch-1 requests")
    print(f"latency p50/p99 ms: in-process {result['in_process_p50_ms']:.3f}/{result['in_process_p99_ms']:.3f}, "
          f"gRPC {result['grpc_p50_ms']:.3f}/{result['grpc_p99_ms']:.3f}, p50 overhead {result['p50_overhead_ms']:.3f}")
    print(f"32 clients: {unbatched:.0f} req/s without batching, {batched:.0f} with, x{result['batching_gain']:.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
