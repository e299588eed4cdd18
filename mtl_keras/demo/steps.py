"""The demo's numbered steps (see ``mtl_keras.demo``): data, features, the three models, the comparison,
plots, export, serving."""

import json
import os
import tempfile
import time
import warnings

import numpy as np

from mtl_keras.demo import FULL, QUICK, report, serving, training
from mtl_keras.demo.training import TASKS


class _Steps:
    def __init__(self, total):
        self.total, self.index, self.start = total, 0, time.perf_counter()

    def __call__(self, text):
        self.index += 1
        print(f"\n[{self.index}/{self.total}] {text}  (t = {time.perf_counter() - self.start:.0f} s)", flush=True)


def _settings(args):
    """``args`` with the --quick or full defaults filled in."""
    defaults = QUICK if args.quick else FULL
    args.samples = args.samples or defaults["samples"]
    args.epochs = args.epochs or defaults["epochs"]
    args.learning_rate = args.learning_rate or defaults["learning_rate"]
    args.users, args.items = defaults["users"], defaults["items"]
    return args


def run(args):
    """Runs the demo; returns the exit status."""
    from mtl_keras import callbacks, export
    from mtl_keras.datasets import synthetic_recsys_spec

    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    args = _settings(args)
    out = os.path.abspath(args.out or tempfile.mkdtemp(prefix="mtl-keras-demo-"))
    os.makedirs(out, exist_ok=True)
    step = _Steps(10)

    step(f"Data: {args.samples} impressions of datasets.synthetic_recsys ({args.users} users, {args.items} items, "
         f"seed {args.seed}), split 80/10/10")
    data = training.load(args.samples, args.users, args.items, args.seed)
    train_y = data["train"][1]
    counts = {"ctr": f"{int(np.sum(train_y['ctr']))} clicks in {len(train_y['ctr'])} training rows",
              "cvr": f"{int(np.nansum(train_y['cvr']))} conversions, labelled on "
                     f"{int(np.sum(~np.isnan(train_y['cvr'])))} clicked rows"}
    print(f"  ctr: {counts['ctr']}; cvr: {counts['cvr']} (NaN elsewhere: masked out of the cvr loss)")

    step("Features: a FeatureSpec (ids -> lookups -> embeddings inside the model), adapted on the training rows")
    spec = synthetic_recsys_spec(data["train"][0])
    print("  price (standardised), user_id, item_id, category, device (embeddings), "
          "clicked_items (mean of item_id's embeddings)")

    multi, *baselines = training.runs(args)
    step(f"Train the multi-task {args.model.upper()} on ctr + cvr (task_weighting={multi.weighting!r}, "
         f"gradient_projection={multi.projection!r}), at most {args.epochs} epochs; early stopping keeps the "
         "epoch with the lowest validation cvr loss")
    usage = callbacks.ExpertUsage({k: v[:1000] for k, v in data["validation"][0].items()})
    training.train(multi, spec, data, args, out, [usage])

    step(f"Train the single-task baselines: the same {args.model.upper()} on cvr alone and on ctr alone, "
         "stopped the same way")
    for baseline in baselines:
        print(f"  {baseline.name}:")
        training.train(baseline, spec, data, args, out)

    step("Compare on the test rows (cvr on clicked rows only: its label is unobserved elsewhere)")
    runs = [multi, *baselines]
    rows = report.evaluate(runs, data["test"], TASKS)
    print(report.table(rows))
    found, lines = report.verdicts(rows, ("cvr", "ctr"), counts)
    print(lines)

    step(f"Plots (PNG) into {out}")
    for path in report.plots(runs, usage, out):
        print(f"  {os.path.relpath(path, out)}")
    print(f"  TensorBoard: tensorboard --logdir {os.path.join(out, 'tensorboard')}  (per-task losses, AUCs, "
          "weights and gradient cosines of every run)")

    step(f"Export {multi.name} for TF Serving (a versioned SavedModel folder)")
    base_path = os.path.join(out, "models", "ranker")
    version_path = export.export_saved_model(multi.model, base_path)
    print(f"  {version_path}: signatures serving_default, one per task, predict_examples; raw features in")

    status = _serve_and_compare(step, multi.model, data, base_path, out)
    with open(os.path.join(out, "demo_results.json"), "w") as handle:
        json.dump({"test": rows, "verdicts": found, "samples": args.samples, "epochs": args.epochs,
                   "served_equal": status == 0}, handle, indent=2)
    seconds = time.perf_counter() - step.start
    verdict = "equal to" if status == 0 else "DIFFERENT FROM"
    print(f"\nDone in {seconds:.0f} s: served predictions {verdict} the in-process ones. Results in {out}")
    return status


def _serve_and_compare(step, model, data, base_path, out):
    """Steps 8-10: the server in the background, 5 test rows through gRPC and REST, the server stopped."""
    step("Serve it: `mtl-keras serve` in the background, gRPC and REST")
    grpc_port, rest_port = serving.free_port(), serving.free_port()
    log_path = os.path.join(out, "server.log")
    server = serving.start_server(base_path, grpc_port, rest_port, log_path)
    status = 0
    try:
        version = serving.wait_until_served(server, grpc_port, log_path)
        print(f"  pid {server.pid}: gRPC localhost:{grpc_port}, REST http://localhost:{rest_port}; "
              f"version {version} AVAILABLE (log: {log_path})")

        step("Predict the same 5 test rows in process, through gRPC (PredictClient) and REST (HTTP POST)")
        raw = {k: np.asarray(v)[:5] for k, v in data["test"][0].items()}
        local = {t: np.asarray(v) for t, v in model.predict(raw, verbose=0).items()}
        served = {"gRPC": serving.predict_grpc(grpc_port, raw), "REST": serving.predict_rest(rest_port, raw)}
        print(f"  curl -d '{{\"inputs\": {{\"user_id\": [...], ...}}}}' "
              f"http://localhost:{rest_port}/v1/models/ranker:predict")
        status, comparison = serving.compare(local, served)
        print(comparison)
    finally:
        step("Shut the server down (SIGTERM: in-flight requests finish)")
        print(f"  server exited with status {serving.stop_server(server)}")
    return status
