"""The MMoE paper's Fig. 4: Shared-Bottom, OMoE, MMoE and PLE on synthetic tasks of correlation p.

Data: ``mtl_keras.datasets.synthetic_tasks`` (MMoE section 3.2; d = 100,
c = 1, m = 10 sines), 100,000 training rows and 10,000 test rows drawn with
the same task directions, for p in {0.5, 0.9, 1.0}. Models, the paper's
sizes: Shared-Bottom one 113-unit ReLU layer; OMoE and MMoE 8 experts of one
16-unit ReLU layer; PLE 2 levels of 3 experts per task and 2 shared experts of
16 units (8 experts a level, as MMoE); every tower one 8-unit layer; Adam.
Metric: test MSE averaged over the two tasks after a fixed number of epochs,
mean ± std over seeds (the seed draws the data, the initialisation and the
batch order).

``--until-converged`` trains each run until it stops improving instead of for
a fixed number of epochs: the last tenth of the training rows is held out,
and training stops once the mean of the two tasks' validation MSE (the
unweighted losses, whatever the task weighting optimises) has not improved
for ``--patience`` epochs, at most ``--epochs``; the best epoch's weights are
kept. It compares what each configuration can reach rather than how fast
it gets there (results under ``quality_synthetic_converged``).

``--weightings famo rlw ...`` adds MMoE trained with each task weighting
(the string ids of ``MultiTaskModel.compile``'s ``task_weighting``, their
defaults) as configurations ``MMoE+<id>``; their table gives each one's test
MSE over plain MMoE's (equal weights) on the same seed, the weighting issue's
"loss at most equal weights' x 1.1" at the paper's data size.

One JSON file per (p, model, seed) under ``--out`` as runs finish: an
interrupted run resumes, and the table and the chart come from whatever files
exist.

    python benchmarks/quality_synthetic.py [--seeds 0 1 2 3 4] [--epochs 10] [--quick]
    python benchmarks/quality_synthetic.py --models MMoE --correlations 0.5 --weightings famo rlw gls stch imtl_l excess_mtl
    python benchmarks/quality_synthetic.py --until-converged --epochs 200 --models MMoE --correlations 0.5 \
        --weightings famo rlw gls stch imtl_l excess_mtl --seeds 0 1 2
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "results", "quality_synthetic")
MODELS = ["Shared-Bottom", "OMoE", "MMoE", "PLE", "MMoE-DSelect-k", "DBMTL"]
CORRELATIONS = [0.5, 0.9, 1.0]


def build(name, inputs, tasks):
    """The model of configuration ``name``; "MMoE+famo" builds MMoE (the weighting is a compile argument)."""
    from mtl_keras import models

    name = name.split("+")[0]
    common = dict(tower_units=(8,), task_types="regression")
    if name == "Shared-Bottom":
        return models.shared_bottom(inputs, tasks, bottom_units=(113,), **common)
    if name == "OMoE":
        return models.mmoe(inputs, tasks, num_experts=8, expert_units=(16,), shared_gate=True, **common)
    if name == "MMoE":
        return models.mmoe(inputs, tasks, num_experts=8, expert_units=(16,), **common)
    if name == "PLE":
        return models.ple(inputs, tasks, num_levels=2, num_task_experts=3, num_shared_experts=2,
                          expert_units=(16,), **common)
    if name == "MMoE-DSelect-k":  # Hazimeh et al. 2021: per-example gates selecting 2 of the 8 experts
        return models.mmoe(inputs, tasks, num_experts=8, expert_units=(16,), gate="dselect_k", k=2, **common)
    if name == "DBMTL":  # MMoE bottom as in EasyRec's census example; task 2 reads task 1's relation output
        return models.dbmtl(inputs, tasks, num_experts=8, expert_units=(16,), tower_units=(8,),
                            relation_units=(8,), task_types="regression")
    raise ValueError(name)


def converged_callbacks(tasks, patience):
    """Early stopping on the mean of the tasks' validation MSE (``val_<task>_loss``), best weights kept."""
    from mtl_keras.backend import keras

    class MeanValidationLoss(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["val_mean_task_loss"] = float(np.mean([logs[f"val_{t}_loss"] for t in tasks]))

    stop = keras.callbacks.EarlyStopping("val_mean_task_loss", mode="min", patience=patience,
                                         restore_best_weights=True)
    return [MeanValidationLoss(), stop]


def run_one(name, correlation, seed, samples, test_samples, epochs, batch_size, learning_rate, patience=None):
    """Test MSE by task, parameter count and epochs trained; ``patience``: train until converged
    (see the module docstring), at most ``epochs``."""
    from mtl_keras import datasets
    from mtl_keras.backend import keras

    x, y = datasets.synthetic_tasks(samples + test_samples, correlation, seed=seed)
    train = slice(0, samples)
    test = slice(samples, samples + test_samples)
    tasks = list(y)
    keras.utils.set_random_seed(seed)
    model = build(name, keras.Input((x.shape[1],), name="features"), tasks)
    weighting = name.split("+")[1] if "+" in name else None
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss={t: "mse" for t in tasks},
                  task_weighting=weighting)
    fit = dict(epochs=epochs, batch_size=batch_size, verbose=0)
    if patience is not None:
        held_out = samples - samples // 10
        validation = slice(held_out, samples)
        train = slice(0, held_out)
        fit["callbacks"] = converged_callbacks(tasks, patience)
        fit["validation_data"] = (x[validation], {t: v[validation] for t, v in y.items()})
    history = model.fit(x[train], {t: v[train] for t, v in y.items()}, **fit)
    predicted = model.predict(x[test], batch_size=4096, verbose=0)
    mse = {t: float(np.mean((predicted[t] - y[t][test]) ** 2)) for t in tasks}
    trained = len(history.history["loss"])
    best = trained if patience is None else int(np.argmin(history.history["val_mean_task_loss"])) + 1
    return mse, int(model.count_params()), {"epochs_trained": trained, "best_epoch": best}


def summarize(out_dir):
    cells = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "p*_*_s*.json"))):
        with open(path) as handle:
            r = json.load(handle)
        cell = cells.setdefault((r["correlation"], r["model"]), {"mse": [], "seeds": [], "params": r["params"],
                                                                  "epochs": set(), "samples": set()})
        cell["mse"].append(float(np.mean(list(r["mse"].values()))))
        cell["seeds"].append(r["seed"])
        cell.setdefault("by_seed", {})[r["seed"]] = cell["mse"][-1]
        cell["epochs"].add(r["epochs"])
        cell.setdefault("best_epochs", []).append(r.get("best_epoch", r["epochs"]))
        cell["samples"].add(r["samples"])
    return cells


def paired_ratios(cells, p, model, base):
    """``model``'s MSE over ``base``'s on each seed both ran at correlation ``p`` (empty if none)."""
    c, b = cells.get((p, model)), cells.get((p, base))
    seeds = sorted(set(c["by_seed"]) & set(b["by_seed"])) if c and b else []
    return np.array([c["by_seed"][s] / b["by_seed"][s] for s in seeds])


def format_table(cells):
    correlations = sorted({p for p, _ in cells}, reverse=True)
    header = ["model", "params"] + [f"p = {p}" for p in correlations] + ["p 1.0 -> 0.5"]
    lines = ["Synthetic tasks: test MSE (mean of the two tasks), mean ± std over seeds (n)",
             "| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for model in MODELS:
        row = [model]
        params = next((c["params"] for (p, m), c in cells.items() if m == model), None)
        if params is None:
            continue
        row.append(str(params))
        for p in correlations:
            c = cells.get((p, model))
            row.append(f"{np.mean(c['mse']):.4f} ± {np.std(c['mse']):.4f} ({len(c['mse'])})" if c else "")
        low, high = cells.get((0.5, model)), cells.get((1.0, model))
        row.append(f"{np.mean(low['mse']) - np.mean(high['mse']):+.4f}" if low and high else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Paired by seed (the seed draws the task, so absolute MSEs vary across seeds): "
              "MSE relative to Shared-Bottom's on the same seed, mean ± std, and seeds won",
              "| model | " + " | ".join(f"p = {p}" for p in correlations) + " |",
              "|" + "|".join(["---"] * (len(correlations) + 1)) + "|"]
    for model in MODELS[1:]:
        row = [model]
        for p in correlations:
            ratios = paired_ratios(cells, p, model, "Shared-Bottom")
            row.append(f"{ratios.mean():.3f} ± {ratios.std():.3f}, {int(np.sum(ratios < 1))}/{len(ratios)}"
                       if len(ratios) else "")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Degradation from p = 1.0 to p = 0.5, paired by seed: MSE(0.5) / MSE(1.0), mean ± std",
              "| model | ratio | seeds |", "|---|---|---|"]
    for model in MODELS:
        low, high = cells.get((0.5, model)), cells.get((1.0, model))
        seeds = sorted(set(low["by_seed"]) & set(high["by_seed"])) if low and high else []
        if seeds:
            ratios = np.array([low["by_seed"][s] / high["by_seed"][s] for s in seeds])
            lines.append(f"| {model} | {ratios.mean():.3f} ± {ratios.std():.3f} | {len(seeds)} |")
    weighted = sorted({m for _, m in cells if "+" in m})
    if weighted:
        lines += ["", "Task weightings on MMoE: test MSE over plain MMoE's (equal weights) on the same seed, "
                  "mean ± std (range), seeds at most 1.1x; the epochs of the kept weights (mean over cells)",
                  "| configuration | " + " | ".join(f"p = {p}" for p in correlations) + " | epochs |",
                  "|" + "|".join(["---"] * (len(correlations) + 2)) + "|"]
        for model in ["MMoE"] + weighted:
            best = [e for (_, m), c in cells.items() if m == model for e in c["best_epochs"]]
            row = [model]
            for p in correlations:
                ratios = paired_ratios(cells, p, model, "MMoE")
                row.append(f"{ratios.mean():.3f} ± {ratios.std():.3f} ({ratios.min():.2f}-{ratios.max():.2f}), "
                           f"{int(np.sum(ratios <= 1.1))}/{len(ratios)}" if len(ratios) else "")
            row.append(f"{np.mean(best):.0f}" if best else "")
            lines.append("| " + " | ".join(row) + " |")
    settings = sorted({(e, s) for c in cells.values() for e in c["epochs"] for s in c["samples"]})
    lines.append(f"(epochs, training rows): {settings}")
    return "\n".join(lines)


def write_chart(cells, path):
    """Left: test MSE against p, mean ± std over seeds. Right: the same paired by seed, as a
    ratio to Shared-Bottom's MSE (the seed draws the task, so absolute MSEs vary widely)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for offset, model in enumerate(MODELS):
        points = sorted((p, np.mean(c["mse"]), np.std(c["mse"])) for (p, m), c in cells.items() if m == model)
        if not points:
            continue
        p, mean, std = map(np.array, zip(*points))
        left.errorbar(p + (offset - 1.5) * 0.006, mean, yerr=std, marker="o", capsize=3, label=model)
        ratios = []
        for q in p:
            c, base = cells[(q, model)], cells.get((q, "Shared-Bottom"))
            seeds = sorted(set(c["by_seed"]) & set(base["by_seed"])) if base else []
            r = np.array([c["by_seed"][s] / base["by_seed"][s] for s in seeds]) if seeds else np.array([np.nan])
            ratios.append((r.mean(), r.std()))
        mean_r, std_r = map(np.array, zip(*ratios))
        right.errorbar(p + (offset - 1.5) * 0.006, mean_r, yerr=std_r, marker="o", capsize=3, label=model)
    left.set_ylabel("test MSE (mean of two tasks)")
    left.set_title("Synthetic tasks (MMoE paper, Fig. 4 setting)", fontsize=10)
    right.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    right.set_ylabel("MSE / Shared-Bottom's MSE, same seed")
    right.set_title("Paired by seed (below 1: better than Shared-Bottom)", fontsize=10)
    for axes in (left, right):
        axes.set_xlabel("task correlation p")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--correlations", type=float, nargs="+", default=CORRELATIONS)
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--weightings", nargs="+", default=[],
                        help="task_weighting ids to run on MMoE as configurations MMoE+<id>")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--test-samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--until-converged", action="store_true",
                        help="early stopping on the held-out mean task MSE; --epochs is then the maximum")
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 seed, 10,000 rows, 3 epochs (about a minute)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder of per-run JSON files (resumable)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.samples, args.test_samples, args.epochs = [0], 10_000, 2_000, 3
        if args.out == DEFAULT_OUT:
            args.out = DEFAULT_OUT + "_quick"
    if args.until_converged and args.out in (DEFAULT_OUT, DEFAULT_OUT + "_quick"):
        args.out += "_converged"
    os.makedirs(args.out, exist_ok=True)
    if not args.table_only:
        for seed in args.seeds:  # seed-major: every cell gets a seed before any gets two
            for p in args.correlations:
                for model in args.models + [f"MMoE+{w}" for w in args.weightings]:
                    path = os.path.join(args.out, f"p{p}_{model}_s{seed}.json")
                    if os.path.exists(path):
                        continue
                    start = time.perf_counter()
                    mse, params, trained = run_one(model, p, seed, args.samples, args.test_samples, args.epochs,
                                                   args.batch_size, args.learning_rate,
                                                   args.patience if args.until_converged else None)
                    record = {"model": model, "correlation": p, "seed": seed, "mse": mse, "params": params,
                              "epochs": args.epochs, "until_converged": args.until_converged, **trained,
                              "samples": args.samples, "batch_size": args.batch_size,
                              "learning_rate": args.learning_rate,
                              "seconds": round(time.perf_counter() - start, 1)}
                    with open(path + ".tmp", "w") as handle:
                        json.dump(record, handle, indent=1)
                    os.replace(path + ".tmp", path)
                    print(f"p={p} {model} seed {seed}: mse {np.mean(list(mse.values())):.4f} "
                          f"(best epoch {trained['best_epoch']} of {trained['epochs_trained']}, "
                          f"{record['seconds']} s)", flush=True)
    cells = summarize(args.out)
    print(format_table(cells))
    if cells:
        write_chart(cells, os.path.join(args.out, "quality_synthetic.png"))
    with open(os.path.join(args.out, "summary.json"), "w") as handle:
        json.dump([{"correlation": p, "model": m, "mse_mean": float(np.mean(c["mse"])),
                    "mse_std": float(np.std(c["mse"])), "seeds": c["seeds"], "params": c["params"],
                    "mse_by_seed": {str(k): v for k, v in c["by_seed"].items()},
                    "epochs": sorted(c["epochs"]), "samples": sorted(c["samples"])}
                   for (p, m), c in sorted(cells.items())], handle, indent=1)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
