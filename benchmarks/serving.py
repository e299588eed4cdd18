"""Serving overhead and batching gain of the local server, measured side by side.

Two servers run in their own processes (``mtl-keras serve``, as deployed), one
without and one with dynamic batching; the clients run here. Measurements are
interleaved so that drift on a shared machine hits both sides alike:

1. Batch-1 latency, in ``--rounds`` rounds of ``--calls`` iterations: each
   iteration calls the loaded SavedModel's signature in-process, then the
   server's own call path in-process (its graph function called with flat tensors), then
   sends the same row through PredictClient (gRPC). Per round, the p50 overhead
   of gRPC against both in-process calls; reported: p50 and p99 over all
   rounds, and the median over rounds of the p50 overhead (machine speed
   drifts from minute to minute on shared hosts).
2. Throughput of 32 concurrent clients sending batch-1 requests: ``--rounds``
   rounds of ``--seconds`` against the plain server, then the batching one;
   the gain is the median over rounds of batched / plain. Also the latency
   under that load, the CPU time per request of each server process and of
   the clients (all on the same CPUs here; Linux /proc), and what batching
   costs a lone request (it waits ``batch_timeout_micros`` for company).

    python benchmarks/serving.py [--rounds 5] [--seconds 3] [--out FILE]
"""

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from mtl_keras import export, models
from mtl_keras.backend import keras
from mtl_keras.serving import PredictClient
from mtl_keras.serving.servables import Servable
from mtl_keras.serving.tensors import fill_content, to_array


def ms(samples, q):
    return float(np.percentile(np.array(samples) * 1000, q))


def interleaved_latency(calls, count):
    """{name: [seconds]} for calls run one after another, ``count`` times each."""
    for _ in range(50):
        for call in calls.values():
            call()
    samples = {name: [] for name in calls}
    for _ in range(count):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - start)
    return samples


def cpu_seconds(pid):
    """User + system CPU time of process ``pid``, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(server, port, clients, seconds, x, expected):
    """(requests per second, server CPU ms per request, client CPU ms per request, p50 ms, p99 ms)
    of ``clients`` callers against the server process ``server``.

    A lean load generator, as ghz or TF Serving's own load tests are: one
    asyncio loop, a channel (HTTP/2 connection) per client, the request
    serialized once. On 2 CPUs shared with the server, every millisecond the
    load generator spends is one the server cannot, so a heavier client
    (PredictClient in 32 threads costs about twice as much) understates what
    the server sustains. Every 64th answer is decoded and checked.
    """
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "ranker"
    fill_content(request.inputs["features"], x)
    payload = request.SerializeToString()
    done, state, seconds_per_call = [0] * clients, {"stop": False}, []

    def check(answer):
        outputs = predict_pb2.PredictResponse.FromString(answer).outputs
        for name, want in expected.items():
            np.testing.assert_allclose(to_array(outputs[name]), want, atol=1e-5)

    async def client(i, started):
        async with grpc.aio.insecure_channel(f"localhost:{port}") as channel:
            predict = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            check(await predict(payload))
            started.release()
            while not state["stop"]:
                sent = time.perf_counter()
                answer = await predict(payload)
                seconds_per_call.append(time.perf_counter() - sent)
                done[i] += 1
                if done[i] % 64 == 0:
                    check(answer)

    async def run():
        started = asyncio.Semaphore(0)
        tasks = [asyncio.create_task(client(i, started)) for i in range(clients)]
        for _ in range(clients):
            await started.acquire()
        start, server_cpu, client_cpu = time.perf_counter(), cpu_seconds(server.pid), time.process_time()
        first = sum(done)
        del seconds_per_call[:]
        await asyncio.sleep(seconds)
        total, elapsed = sum(done) - first, time.perf_counter() - start
        server_cpu, client_cpu = cpu_seconds(server.pid) - server_cpu, time.process_time() - client_cpu
        under_load = list(seconds_per_call)
        state["stop"] = True
        await asyncio.gather(*tasks)
        return (total / elapsed, 1000 * server_cpu / total, 1000 * client_cpu / total,
                ms(under_load, 50), ms(under_load, 99))

    return asyncio.run(run())


def start_server(base, extra=()):
    command = [sys.executable, "-m", "mtl_keras.cli", "serve", "--model_name", "ranker",
               "--model_base_path", base, "--port", "0", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    port = int(re.search(r"gRPC on (\d+)", process.stdout.readline()).group(1))
    return process, port


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500, help="latency iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--features", type=int, default=256, help="input width")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--width", type=int, default=256, help="units of each expert")
    # One batch holds every client; the timeout caps what a request waits for company when few
    # clients are busy (2 ms: gain x1.7 in one run, 5 ms: x2.0-2.2, 10 ms: x2.2).
    parser.add_argument("--batching", default="max_batch_size { value: 32 }\nbatch_timeout_micros { value: 10000 }\n"
                        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 1 }\n",
                        help="BatchingParameters text for the batching server")
    parser.add_argument("--server_args", default="--grpc_max_threads 64",
                        help="flags for both servers (64 threads: the plain server's best here; 16 was slower)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = models.mmoe(keras.Input((args.features,), name="features"), ["ctr", "cvr", "like", "share"],
                        num_experts=args.experts, expert_units=(args.width,), tower_units=(64,))
    base = tempfile.mkdtemp(prefix="serving-bench-")
    path = export.export_saved_model(model, base)
    batching_file = os.path.join(base, "batching_parameters.txt")
    with open(batching_file, "w") as handle:
        handle.write(args.batching)
    extra = args.server_args.split()
    plain, plain_port = start_server(base, extra)
    batched, batched_port = start_server(base, [*extra, "--enable_batching", "--batching_parameters_file", batching_file])
    try:
        x = np.random.default_rng(0).normal(size=(1, args.features)).astype("float32")
        signature = tf.saved_model.load(path).signatures["serving_default"]
        flat = Servable(1, path).signatures["serving_default"].function
        client = PredictClient(f"localhost:{plain_port}", "ranker")
        calls = {"in_process": lambda: signature(features=tf.constant(x)),
                 "in_process_flat": lambda: flat(features=x),
                 "grpc": lambda: client.predict({"features": x})}
        latency = [interleaved_latency(calls, args.calls) for _ in range(args.rounds)]
        expected = {k: v.numpy() for k, v in signature(features=tf.constant(x)).items()}
        client.close()
        lone = PredictClient(f"localhost:{batched_port}", "ranker")
        alone = interleaved_latency({"batching": lambda: lone.predict({"features": x})}, 100)["batching"]
        lone.close()
        rounds = []
        for _ in range(args.rounds):
            rounds.append((throughput(plain, plain_port, args.clients, args.seconds, x, expected),
                           throughput(batched, batched_port, args.clients, args.seconds, x, expected)))
    finally:
        for process in (plain, batched):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    gains = [b[0] / u[0] for u, b in rounds]
    every = {name: [t for samples in latency for t in samples[name]] for name in calls}
    overheads = [[ms(s["grpc"], 50) - ms(s[base], 50) for s in latency] for base in ("in_process", "in_process_flat")]
    result = {
        "in_process_p50_ms": ms(every["in_process"], 50), "in_process_p99_ms": ms(every["in_process"], 99),
        "in_process_flat_p50_ms": ms(every["in_process_flat"], 50),
        "grpc_p50_ms": ms(every["grpc"], 50), "grpc_p99_ms": ms(every["grpc"], 99),
        "p50_overhead_per_round_ms": [round(o, 3) for o in overheads[0]],
        "p50_overhead_ms": float(np.median(overheads[0])),
        "p50_overhead_vs_flat_ms": float(np.median(overheads[1])),
        "rounds_rps": [[round(u[0]), round(b[0])] for u, b in rounds],
        "unbatched_rps": float(np.median([u[0] for u, _ in rounds])),
        "batched_rps": float(np.median([b[0] for _, b in rounds])),
        "batching_gain": float(np.median(gains)),
        # Where the 2 shared CPUs go: the load generator's share is not the server's to amortise.
        "unbatched_server_cpu_ms_per_request": float(np.median([u[1] for u, _ in rounds])),
        "batched_server_cpu_ms_per_request": float(np.median([b[1] for _, b in rounds])),
        "client_cpu_ms_per_request": float(np.median([r[2] for pair in rounds for r in pair])),
        "under_load_p50_p99_ms": {"plain": [round(float(np.median([u[k] for u, _ in rounds])), 2) for k in (3, 4)],
                                  "batched": [round(float(np.median([b[k] for _, b in rounds])), 2) for k in (3, 4)]},
        "lone_request_on_batching_server_p50_ms": ms(alone, 50),
    }
    print(f"MMoE {args.features} -> {args.experts}x{args.width} experts, 4 heads; batch-1 requests; "
          f"{os.cpu_count()} CPUs")
    print(f"latency p50/p99 ms: in-process {result['in_process_p50_ms']:.3f}/{result['in_process_p99_ms']:.3f}, "
          f"gRPC {result['grpc_p50_ms']:.3f}/{result['grpc_p99_ms']:.3f}")
    print(f"p50 overhead per round ms: {result['p50_overhead_per_round_ms']}; median {result['p50_overhead_ms']:.3f}")
    print(f"the server's own call path in-process (graph function called flat): p50 "
          f"{result['in_process_flat_p50_ms']:.3f}; median p50 overhead against it {result['p50_overhead_vs_flat_ms']:.3f}")
    print(f"{args.clients} clients, req/s per round (plain, batched): {result['rounds_rps']}; "
          f"median gain x{result['batching_gain']:.2f}")
    print(f"CPU ms per request (medians): plain server {result['unbatched_server_cpu_ms_per_request']:.3f}, "
          f"batching server {result['batched_server_cpu_ms_per_request']:.3f}, "
          f"clients {result['client_cpu_ms_per_request']:.3f}")
    print(f"latency under that load p50/p99 ms (medians over rounds): {result['under_load_p50_p99_ms']}; "
          f"a lone request on the batching server waits for the timeout: p50 "
          f"{result['lone_request_on_batching_server_p50_ms']:.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
