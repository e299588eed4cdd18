"""``mtl-keras demo``: the toolkit end to end, in numbered steps.

1. data: a synthetic recommender log (``datasets.synthetic_recsys``: user and item
   ids, category, device, price, click histories; ctr, and cvr observed after a click);
2. features: a ``FeatureSpec`` (lookups and embeddings inside the model), adapted on
   the training rows;
3. a PLE on ctr and cvr, compiled with uncertainty weighting and PCGrad, trained with
   Keras's progress bar and early stopping on the validation loss (TensorBoard logs, task
   weights, gradient cosines and expert usage recorded);
4. the same PLE with equal weights, as the baseline;
5. per-task test AUC and log loss of both;
6. PNG plots: expert usage per gating layer, task weights, gradient cosine,
   validation curves;
7. a versioned TF Serving export;
8. ``mtl-keras serve`` started in the background (gRPC and REST);
9. the same rows predicted in process, through gRPC (``PredictClient``, TF Serving's
   stubs) and through REST (an HTTP POST, as ``curl`` sends), compared;
10. the server shut down.

The exit status is 1 when a served prediction differs from the in-process one.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings

import numpy as np

TASKS = ("ctr", "cvr")
TOLERANCE = 1e-5  # float32 through protobuf and JSON: equal to the printed digits


def add_arguments(parser):
    parser.add_argument("--out", default=None, help="folder for results, plots, TensorBoard logs and the export "
                                                    "(default: a new temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a small run (about a minute): fewer rows and epochs")
    parser.add_argument("--samples", type=int, default=None, help="impressions (default 30000; --quick 4000)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="at most (early stopping on the validation loss); default 5, --quick 2")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=0.005)
    parser.add_argument("--model", choices=["ple", "mmoe"], default="ple")
    parser.add_argument("--weighting", default="uncertainty", help="uncertainty, gradnorm, dwa or equal")
    parser.add_argument("--projection", default="pcgrad", help="pcgrad, gradvac, mgda, cagrad, pareto or none")
    parser.add_argument("--seed", type=int, default=0)


class _Steps:
    def __init__(self, total):
        self.total, self.index, self.start = total, 0, time.perf_counter()

    def __call__(self, text):
        self.index += 1
        print(f"\n[{self.index}/{self.total}] {text}  (t = {time.perf_counter() - self.start:.0f} s)", flush=True)


def run(args):
    """Runs the demo; returns the exit status."""
    from mtl_keras import callbacks, datasets, export, models, plots
    from mtl_keras import features as F
    from mtl_keras.datasets import synthetic_recsys_spec
    from mtl_keras.backend import keras

    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    samples = args.samples or (4000 if args.quick else 30000)
    epochs = args.epochs or (2 if args.quick else 5)
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="mtl-keras-demo-"))
    os.makedirs(out, exist_ok=True)
    step = _Steps(10)

    step(f"Data: {samples} impressions of datasets.synthetic_recsys (seed {args.seed}), split 80/10/10")
    x, y = datasets.synthetic_recsys(samples, seed=args.seed)
    parts = _split(samples, args.seed)
    rows = {name: ({k: v[i] for k, v in x.items()}, {t: y[t][i] for t in TASKS}) for name, i in parts.items()}
    train_y = rows["train"][1]
    print(f"  train {len(parts['train'])}, validation {len(parts['validation'])}, test {len(parts['test'])} rows; "
          f"click rate {np.mean(train_y['ctr']):.3f}; cvr observed (after a click) on "
          f"{np.mean(~np.isnan(train_y['cvr'])):.1%} of rows, NaN elsewhere (masked out of the cvr loss)")

    step("Features: a FeatureSpec (ids -> lookups -> embeddings inside the model), adapted on the training rows")
    spec = synthetic_recsys_spec(rows["train"][0])
    print("  price (standardised), user_id, item_id, category, device (embeddings), "
          "clicked_items (mean of item_id's embeddings)")

    def build():
        if args.model == "ple":
            return models.ple(spec, list(TASKS), num_levels=2, num_task_experts=2, num_shared_experts=2,
                              expert_units=(32,), tower_units=(16,))
        return models.mmoe(spec, list(TASKS), num_experts=4, expert_units=(32,), tower_units=(16,))

    feeds = {}
    histories, logs, trained = {}, {}, {}
    weighting = None if args.weighting in ("equal", "none") else args.weighting
    projection = None if args.projection in ("none", "") else args.projection
    method = "+".join(filter(None, [weighting, projection])) or "equal"
    runs = [(f"{args.model}_{method}", weighting, projection), (f"{args.model}_equal", None, None)]
    verbose = 1 if sys.stdout.isatty() else 2
    usage = None
    for index, (run_name, run_weighting, run_projection) in enumerate(runs):
        if index == 0:
            step(f"Train {args.model.upper()} on ctr + cvr with task_weighting={run_weighting!r}, "
                 f"gradient_projection={run_projection!r}, {epochs} epochs")
        else:
            step(f"Train the same {args.model.upper()} with equal weights and no projection (the baseline)")
        keras.utils.set_random_seed(args.seed)
        model = build()
        if not feeds:
            feeds = {name: F.prepare_inputs(model, part[0]) for name, part in rows.items()}
        model.compile(
            optimizer=keras.optimizers.Adam(args.learning_rate),
            loss={t: "binary_crossentropy" for t in TASKS},
            metrics={t: [keras.metrics.AUC(name="auc")] for t in TASKS},
            task_weighting=run_weighting,
            gradient_projection=run_projection,
            log_gradient_cosine=True,
        )
        steps_per_epoch = -(-len(parts["train"]) // args.batch_size)
        logs[run_name] = plots.BatchLog(every=max(1, steps_per_epoch // 10))
        extra = [logs[run_name],
                 keras.callbacks.TensorBoard(os.path.join(out, "tensorboard", run_name), write_graph=False),
                 # cvr has few labels and overfits the id embeddings within a few epochs
                 keras.callbacks.EarlyStopping("val_loss", patience=1, restore_best_weights=True)]
        if index == 0:
            sample = {k: v[:1000] for k, v in feeds["validation"].items()}
            usage = callbacks.ExpertUsage(sample)
            extra.append(usage)
        history = model.fit(
            feeds["train"], rows["train"][1], validation_data=(feeds["validation"], rows["validation"][1]),
            epochs=epochs, batch_size=args.batch_size, verbose=verbose, callbacks=extra,
        )
        histories[run_name], trained[run_name] = history.history, model
        best = int(np.argmin(history.history["val_loss"])) + 1
        print(f"  kept the weights of epoch {best} of {len(history.history['val_loss'])} (lowest validation loss)")

    step("Evaluate on the test rows (cvr on clicked rows only: its label is unobserved elsewhere)")
    test_x, test_y = feeds["test"], rows["test"][1]
    table = []
    for run_name, model in trained.items():
        predicted = model.predict(test_x, batch_size=4096, verbose=0)
        row = {"model": run_name}
        for task in TASKS:
            seen = ~np.isnan(test_y[task].ravel())
            labels, scores = test_y[task].ravel()[seen], predicted[task].ravel()[seen]
            row[f"{task} AUC"] = _auc(labels, scores)
            row[f"{task} logloss"] = _log_loss(labels, scores)
        table.append(row)
    print(_table(table))

    step(f"Plots (PNG) into {out}")
    first = runs[0][0]
    written = list(plots.expert_usage(usage, out))
    written.append(_plot(plots.task_weights, logs[first], os.path.join(out, "task_weights.png")))
    written.append(_plot(plots.gradient_cosine, logs[first], os.path.join(out, "gradient_cosine.png")))
    written.append(_plot(plots.validation_curves, histories, os.path.join(out, "validation_curves.png")))
    for path in filter(None, written):
        print(f"  {os.path.relpath(path, out)}")
    print(f"  TensorBoard: tensorboard --logdir {os.path.join(out, 'tensorboard')}  (per-task losses, AUCs, "
          "weights and gradient cosines of both runs)")

    step(f"Export {first} for TF Serving (a versioned SavedModel folder)")
    model = trained[first]
    base_path = os.path.join(out, "models", "ranker")
    version_path = export.export_saved_model(model, base_path)
    print(f"  {version_path}: signatures serving_default, one per task, predict_examples; raw features in")

    step("Serve it: `mtl-keras serve` in the background, gRPC and REST")
    grpc_port, rest_port = _free_port(), _free_port()
    log_path = os.path.join(out, "server.log")
    server = _start_server(base_path, grpc_port, rest_port, log_path)
    status = 0
    try:
        version = _wait_until_served(server, grpc_port, log_path)
        print(f"  pid {server.pid}: gRPC localhost:{grpc_port}, REST http://localhost:{rest_port}; "
              f"version {version} AVAILABLE (log: {log_path})")

        step("Predict the same 5 test rows in process, through gRPC (PredictClient) and REST (HTTP POST)")
        raw = {k: np.asarray(v)[:5] for k, v in rows["test"][0].items()}
        local = {t: np.asarray(v) for t, v in model.predict(F.prepare_inputs(model, raw), verbose=0).items()}
        served = {"gRPC": _predict_grpc(grpc_port, raw), "REST": _predict_rest(rest_port, raw)}
        print(f"  curl -d '{{\"inputs\": {{\"user_id\": [...], ...}}}}' "
              f"http://localhost:{rest_port}/v1/models/ranker:predict")
        status, comparison = _compare(local, served)
        print(comparison)
    finally:
        step("Shut the server down (SIGTERM: in-flight requests finish)")
        code = _stop_server(server)
        print(f"  server exited with status {code}")

    with open(os.path.join(out, "demo_results.json"), "w") as handle:
        json.dump({"test": table, "samples": samples, "epochs": epochs, "served_equal": status == 0}, handle,
                  indent=2)
    seconds = time.perf_counter() - step.start
    verdict = "equal to" if status == 0 else "DIFFERENT FROM"
    print(f"\nDone in {seconds:.0f} s: served predictions {verdict} the in-process ones. Results in {out}")
    return status


def _split(n, seed):
    order = np.random.default_rng(seed + 1).permutation(n)
    n_val = n_test = n // 10
    return {"train": order[n_val + n_test:], "validation": order[:n_val], "test": order[n_val:n_val + n_test]}


def _plot(function, data, path):
    try:
        function(data, path)
    except ValueError as error:  # e.g. no projection, so no cosine: say so, keep going
        print(f"  ({os.path.basename(path)} skipped: {error})")
        return None
    return path


def _auc(labels, scores):
    """ROC AUC by the rank-sum formula (ties share their mean rank); NaN with one class."""
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel()
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _log_loss(labels, scores):
    p = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def _table(rows):
    headers = list(rows[0])
    cells = [[f"{r[h]:.4f}" if isinstance(r[h], float) else str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule] + [line(c) for c in cells])


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _start_server(base_path, grpc_port, rest_port, log_path):
    script = os.path.join(os.path.dirname(sys.executable), "mtl-keras")  # the command; else the module
    start = [script] if os.path.exists(script) else [sys.executable, "-m", "mtl_keras.cli"]
    command = start + ["serve", "--model_name", "ranker",
               "--model_base_path", base_path, "--port", str(grpc_port), "--rest_api_port", str(rest_port)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    with open(log_path, "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_until_served(server, port, log_path, timeout=180.0):
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


def _predict_grpc(port, raw):
    from mtl_keras.serving import PredictClient

    client = PredictClient(f"localhost:{port}", "ranker")
    try:
        return {t: np.asarray(v) for t, v in client.predict(raw).items()}
    finally:
        client.close()


def _predict_rest(port, raw):
    """POST /v1/models/ranker:predict with the columnar ("inputs") JSON body, as curl -d would."""
    body = json.dumps({"signature_name": "serving_default",
                       "inputs": {name: np.asarray(v).tolist() for name, v in raw.items()}}).encode()
    request = urllib.request.Request(f"http://localhost:{port}/v1/models/ranker:predict", data=body,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        outputs = json.loads(response.read())["outputs"]
    return {t: np.asarray(v, np.float32) for t, v in outputs.items()}


def _compare(local, served):
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


def _stop_server(server, grace=20.0):
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(grace)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode
