"""Census-income (MMoE paper, section 6.3): test AUC per task for every architecture and method.

Groups 1 (income, marital) and 2 (education, marital) of UCI census-income,
split by ``mtl_keras.datasets.census_income(seed=...)`` (70 / 15 / 15). Each
configuration trains with Adam on the one-hot features, keeps the weights of
the epoch with the lowest mean of the tasks' validation log losses (early
stopping, patience 2; the weighted loss a weighting optimises would stop each
method on a different quantity) and reports the test AUC of each task. Configurations: one single-task MLP per
task, Shared-Bottom, Cross-Stitch, OMoE, MMoE, MMoE with DSelect-k gates, PLE,
PLE with DSelect-k gates, SNR, NDDR, MTAN, AdaShare, Learning to Branch,
MTL-NAS, AITM and DBMTL (builders' defaults), and MMoE with each task
weighting and each gradient projection. AITM's funnel is a choice here, the
tasks are no funnel: marital first, then income (group 2: education). The
calibrator penalises a later step's probability above an earlier one's, and
this order leaves fewer training rows against it (a positive later label
under a negative earlier one, seed 0's split: 5.6 % of group 1's rows, 15.7 % of group 2's;
the reverse order 43 % and 40 %). PEPNet is left out: its gates read prior
(user, item or domain) features, and census has one dense one-hot input and
none (``architectures_recsys.py`` runs it). The searched architectures (AdaShare,
Learning to Branch, MTL-NAS) train searching, are frozen
(``models.freeze_structure``) and fine-tuned with the same early stopping; the
table gives every configuration's parameter count as served (the trainable
variables some head reads once the structure is frozen).

Results are written one JSON file per (group, configuration, seed) under
``--out`` as they finish, so an interrupted run resumes where it stopped;
the table is made from whatever files exist. Published numbers (group 1: the
MMoE paper's best of 400 runs, and PaddleRec's Share-Bottom and MMoE, each on
its own split) are printed next to ours.

    python benchmarks/quality_census.py [--groups 1 2] [--seeds 0 1 2] [--epochs 8] [--quick]
"""

import argparse
import glob
import json
import os
import sys
import time
import warnings

import numpy as np

# Keras 3 warns when a one-input model gets its input as a {"features": x} dict.
warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # quality_synthetic sits next to this file, also when the tests load it by path
from quality_synthetic import converged_callbacks  # noqa: E402
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "census-income.test.gz")
DEFAULT_OUT = os.path.join(HERE, "results", "quality_census")

# Published group 1 AUCs (income / marital), each on its authors' own split of the full data:
# the MMoE paper's table (best of 400 runs) and PaddleRec's models/multitask/readme.md
# (Share-Bottom and MMoE, 400 epochs at batch 32).
PUBLISHED = {
    "paper": {
        1: {
            "shared_bottom": {"income": 0.9361, "marital": 0.9915},
            "omoe": {"income": 0.9387, "marital": 0.9928},
            "mmoe": {"income": 0.9410, "marital": 0.9926},
            "cross_stitch": {"income": 0.9406, "marital": 0.9917},
        },
    },
    "PaddleRec": {
        1: {
            "shared_bottom": {"income": 0.93120, "marital": 0.99256},
            "mmoe": {"income": 0.94465, "marital": 0.99324},
        },
    },
}

ARCHITECTURES = ["single_task", "shared_bottom", "cross_stitch", "omoe", "mmoe", "mmoe_dselect_k", "ple",
                 "ple_dselect_k", "snr", "nddr", "mtan", "adashare", "learning_to_branch", "mtl_nas", "aitm", "dbmtl",
                 "nddr_no_bn", "mtl_nas_no_bn"]
# The NDDR-fusion architectures without the paper's batch norm after each fusion (``batch_norm=False``):
# an ablation, the explanation of their lag behind Shared-Bottom (docs/benchmarks.md).
WITHOUT_BATCH_NORM = ("nddr_no_bn", "mtl_nas_no_bn")
# Printed under the table: the architectures census cannot give a meaningful run.
LEFT_OUT = {"pepnet": "its gates read prior (user, item or domain) features; census has one dense one-hot "
                      "input and none (see architectures_recsys.py)"}
# Early stopping: on the mean of the tasks' validation losses, not on `val_loss`, which a
# weighting's own weights (learnt, random or geometric) make a different quantity per method.
PATIENCE = 2
FUNNEL_FIRST = "marital"  # AITM's first step here: see the module's docstring
SEARCHED = ("adashare", "learning_to_branch", "mtl_nas", "mtl_nas_no_bn")  # search, freeze, fine-tune
WEIGHTINGS = ["uncertainty", "gradnorm", "dwa", "famo", "rlw", "gls", "stch", "imtl_l", "excess_mtl"]
PROJECTIONS = ["pcgrad", "gradvac", "mgda", "cagrad", "pareto", "imtl", "nash_mtl", "aligned_mtl", "upgrad", "fairgrad",
               "db_mtl", "moco", "sdmgrad", "modo", "rgw", "graddrop"]
CONFIGS = ARCHITECTURES + [f"mmoe+{w}" for w in WEIGHTINGS] + [f"mmoe+{p}" for p in PROJECTIONS]
QUICK_CONFIGS = ["single_task", "shared_bottom", "mmoe", "mmoe+uncertainty", "mmoe+pcgrad"]


def build(config, inputs, tasks, steps_per_epoch=100):
    """The configuration's model; ``steps_per_epoch`` paces the searched architectures' schedules."""
    from mtl_keras import models

    arch = config.split("+")[0]
    if arch == "shared_bottom":
        return models.shared_bottom(inputs, tasks)
    if arch == "cross_stitch":
        return models.cross_stitch(inputs, tasks)
    if arch == "omoe":
        return models.mmoe(inputs, tasks, shared_gate=True)
    if arch == "mmoe":
        return models.mmoe(inputs, tasks)
    if arch == "mmoe_dselect_k":
        return models.mmoe(inputs, tasks, gate="dselect_k")
    if arch == "ple":
        return models.ple(inputs, tasks)
    if arch == "ple_dselect_k":
        return models.ple(inputs, tasks, gate="dselect_k")
    if arch == "aitm":
        return models.aitm(inputs, sorted(tasks, key=lambda task: task != FUNNEL_FIRST))
    if arch == "dbmtl":
        return models.dbmtl(inputs, tasks)
    if arch == "snr":
        return models.snr(inputs, tasks)
    if arch in ("nddr", "mtan", "mtl_nas"):
        return getattr(models, arch)(inputs, tasks)
    if arch in WITHOUT_BATCH_NORM:
        return getattr(models, arch.removesuffix("_no_bn"))(inputs, tasks, batch_norm=False)
    if arch in ("adashare", "learning_to_branch"):
        return getattr(models, arch)(inputs, tasks, steps_per_epoch=steps_per_epoch)
    raise ValueError(config)


def compile_config(model, config, tasks, learning_rate):
    """Compiles ``model`` for ``config``: Adam, a binary loss per task, the method after "+" if any."""
    from mtl_keras.backend import keras

    method = config.split("+")[1] if "+" in config else None
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss={task: "binary_crossentropy" for task in tasks},
        task_weighting=method if method in WEIGHTINGS else None,
        gradient_projection=method if method in PROJECTIONS else None,
        # GradDrop masks at the shared representation: fast mode is its only one.
        projection_mode="fast" if method == "graddrop" else "exact",
    )


def fit_architecture(model, arch, compile_model, fit):
    """``compile_model(model)`` then ``fit(model)``; a searched architecture is then frozen, compiled
    again and fine-tuned. Returns (the fits' histories, the frozen structure or None)."""
    from mtl_keras import models

    compile_model(model)
    histories = [fit(model)]
    structure = None
    if arch in SEARCHED:
        structure = models.freeze_structure(model)
        compile_model(model)  # the train step and the shared variables change with the structure
        histories.append(fit(model))
    return histories, structure


def serving_parameters(model, x):
    """Trainable parameters some head reads at inference: what an export keeps (a frozen structure's
    unused blocks, nodes and edges and the auxiliary towers left out)."""
    from mtl_keras.backend import tf

    sample = tf.nest.map_structure(lambda v: v[:2], x)
    with tf.GradientTape() as tape:
        heads = model(sample, training=False)
        total = tf.add_n([tf.reduce_sum(h) for h in heads.values()])
    gradients = tape.gradient(total, model.trainable_variables)
    return int(sum(np.prod(v.shape) for v, g in zip(model.trainable_variables, gradients) if g is not None))


def train_one(config, data, tasks, seed, epochs, batch_size, learning_rate):
    """Test AUC by task for one configuration and seed."""
    from mtl_keras import models
    from mtl_keras.backend import keras
    from mtl_keras.evaluation import auc, log_loss

    width = data.train.x["features"].shape[1]
    fit_args = dict(epochs=epochs, batch_size=batch_size, verbose=0)
    scores, losses, epochs_run = {}, {}, {}
    if config == "single_task":
        for task in tasks:
            keras.utils.set_random_seed(seed)
            model = models.shared_bottom(keras.Input((width,), name="features"), [task])
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss={task: "binary_crossentropy"})
            history = model.fit(
                data.train.x, {task: data.train.y[task]},
                validation_data=(data.validation.x, {task: data.validation.y[task]}),
                callbacks=converged_callbacks([task], PATIENCE), **fit_args,
            )
            predicted = model.predict(data.test.x, batch_size=4096, verbose=0)[task]
            scores[task] = auc(data.test.y[task], predicted)
            losses[task] = log_loss(data.test.y[task], predicted)
            epochs_run[task] = len(history.history["loss"])
        # one single-task model per task, all of one size
        return scores, losses, epochs_run, {"params": serving_parameters(model, data.test.x) * len(tasks)}
    keras.utils.set_random_seed(seed)
    steps = -(-len(data.train.y[tasks[0]]) // batch_size)
    arch = config.split("+")[0]
    model = build(config, keras.Input((width,), name="features"), tasks, steps_per_epoch=steps)
    histories, structure = fit_architecture(
        model, arch,
        lambda m: compile_config(m, config, tasks, learning_rate),
        lambda m: m.fit(data.train.x, data.train.y, validation_data=(data.validation.x, data.validation.y),
                        callbacks=converged_callbacks(tasks, PATIENCE), **fit_args),
    )
    predicted = model.predict(data.test.x, batch_size=4096, verbose=0)
    for task in tasks:
        scores[task] = auc(data.test.y[task], predicted[task])
        losses[task] = log_loss(data.test.y[task], predicted[task])
    # The cosine between the tasks' gradients of the shared variables, per epoch (with a projection).
    logged = {k: [float(v) for v in values] for k, values in histories[-1].history.items()
              if k.startswith("grad_cosine/") or (k.endswith("_weight") and not k.startswith("val_"))}
    logged["params"] = serving_parameters(model, data.test.x)
    if structure is not None:
        logged["structure"] = structure
    return scores, losses, {"all": sum(len(h.history["loss"]) for h in histories)}, logged


def summarize(out_dir):
    """{group: {config: {task: [auc per seed]}}} from the JSON files, and the epoch settings seen."""
    table = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "g*_*_s*.json"))):
        with open(path) as handle:
            record = json.load(handle)
        cell = table.setdefault(record["group"], {}).setdefault(record["config"], {})
        for task, value in record["auc"].items():
            cell.setdefault(task, []).append(value)
        cell.setdefault("_seeds", []).append(record["seed"])
        if "test_log_loss" in record:  # runs before the log loss was recorded have none
            cell.setdefault("_loss", []).append(sum(record["test_log_loss"].values()))
        params = cell.setdefault("_params", set())
        if record.get("logged", {}).get("params") is not None:  # runs before parameter counts have none
            params.add(record["logged"]["params"])
        cell.setdefault("_epochs", set()).add(record["max_epochs"])
    return table


def format_table(table):
    lines = []
    for group in sorted(table):
        rows = table[group]
        tasks = sorted({t for cell in rows.values() for t in cell if not t.startswith("_")})
        lines.append(f"\nCensus-income group {group}: test AUC, mean ± std over seeds")
        sources = [name for name, by_group in PUBLISHED.items() if group in by_group]
        header = (["configuration", "seeds"] + tasks + [f"{name} {t}" for name in sources for t in tasks]
                  + ["params", "test log loss / mmoe"])
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        base = rows.get("mmoe")
        for config in CONFIGS:
            if config not in rows:
                continue
            cell = rows[config]
            values = []
            for task in tasks:
                v = np.array(cell.get(task, [np.nan]))
                text = f"{v.mean():.4f} ± {v.std():.4f}"
                if base and config != "mmoe" and task in base and len(base[task]) == len(v):
                    text += f" ({v.mean() - np.mean(base[task]):+.4f})"
                values.append(text)
            for name in sources:
                published = PUBLISHED[name][group].get(config, {})
                values += [f"{published[t]:.4f}" if t in published else "" for t in tasks]
            values.append("/".join(str(p) for p in sorted(cell.get("_params", ()))))
            has_losses = base and "_loss" in cell and len(cell["_loss"]) == len(base.get("_loss", ()))
            values.append(f"{np.mean(cell['_loss']) / np.mean(base['_loss']):.3f}" if has_losses else "")
            lines.append("| " + " | ".join([config, str(len(cell["_seeds"]))] + values) + " |")
        lines.append("(in parentheses: difference to plain MMoE's mean; last column: the sum of the tasks'"
                     " test log losses over plain MMoE's (equal weights), means over the same seeds)")
        lines += [f"{name} is not in this table: {reason}." for name, reason in LEFT_OUT.items()]
    return "\n".join(lines)


def write_chart(table, path):
    """Per group, a bar per configuration and task: mean test AUC with the std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = sorted(table)
    figure, grid = plt.subplots(len(groups), 2, figsize=(11, 3.6 * len(groups)), squeeze=False)
    for row, group in enumerate(groups):
        rows = table[group]
        configs = [c for c in CONFIGS if c in rows]
        tasks = sorted({t for cell in rows.values() for t in cell if not t.startswith("_")})
        for column, task in enumerate(tasks[:2]):
            axes = grid[row][column]
            means = [np.mean(rows[c].get(task, [np.nan])) for c in configs]
            stds = [np.std(rows[c].get(task, [np.nan])) for c in configs]
            axes.bar(range(len(configs)), means, yerr=stds, capsize=2,
                     color=["tab:orange" if c == "mmoe" else "tab:blue" for c in configs])
            low = np.nanmin(np.array(means) - np.array(stds))
            axes.set_ylim(low - 0.002, np.nanmax(np.array(means) + np.array(stds)) + 0.001)
            axes.set_xticks(range(len(configs)), configs, rotation=60, ha="right", fontsize=7)
            axes.set_title(f"group {group}: {task} test AUC", fontsize=9)
            axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=None, help=f"a subset of {CONFIGS}")
    parser.add_argument("--epochs", type=int, default=8, help="at most; early stopping on the mean of the tasks' validation losses")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--quick", action="store_true",
                        help="group 1, seed 0, 5 configurations, 3 epochs (a few minutes)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder of per-run JSON files (resumable)")
    parser.add_argument("--table-only", action="store_true", help="print the table of the files in --out")
    args = parser.parse_args(argv)
    configs = args.configs or CONFIGS
    if args.quick:
        args.groups, args.seeds, args.epochs = [1], [0], 3
        configs = args.configs or QUICK_CONFIGS
        if args.out == DEFAULT_OUT:
            args.out = DEFAULT_OUT + "_quick"
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {CONFIGS}")
    os.makedirs(args.out, exist_ok=True)
    if not args.table_only:
        from mtl_keras import datasets

        for group in args.groups:
            data, data_seed = None, None  # loaded once per seed, and only for a seed with runs left
            for seed in args.seeds:  # seed-major: every configuration gets a seed before any gets two
                for config in configs:
                    path = os.path.join(args.out, f"g{group}_{config}_s{seed}.json")
                    if os.path.exists(path):
                        continue
                    if data_seed != seed:
                        data, data_seed = datasets.census_income(args.data, group=group, seed=seed), seed
                        tasks = list(data.train.y)
                    start = time.perf_counter()
                    scores, losses, epochs_run, logged = train_one(
                        config, data, tasks, seed, args.epochs, args.batch_size, args.learning_rate
                    )
                    record = {
                        "group": group, "config": config, "seed": seed, "auc": scores,
                        "test_log_loss": losses, "max_epochs": args.epochs, "epochs_run": epochs_run, "logged": logged,
                        "batch_size": args.batch_size,
                        "learning_rate": args.learning_rate, "seconds": round(time.perf_counter() - start, 1),
                        "early_stopping": "mean of the tasks' validation losses",
                    }
                    with open(path + ".tmp", "w") as handle:
                        json.dump(record, handle, indent=1)
                    os.replace(path + ".tmp", path)
                    print(f"group {group} seed {seed} {config}: "
                          + ", ".join(f"{t} {v:.4f}" for t, v in scores.items())
                          + f" ({record['seconds']} s)", flush=True)
    table = summarize(args.out)
    text = format_table(table)
    print(text)
    summary = {
        str(g): {c: {k: (sorted(v) if isinstance(v, set) else v) for k, v in cell.items()} for c, cell in rows.items()}
        for g, rows in table.items()
    }
    with open(os.path.join(args.out, "summary.json"), "w") as handle:
        json.dump({"table": summary, "published": {k: {str(g): v for g, v in by_group.items()}
                                                   for k, by_group in PUBLISHED.items()}}, handle, indent=1)
    if table:
        write_chart(table, os.path.join(args.out, "quality_census.png"))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
