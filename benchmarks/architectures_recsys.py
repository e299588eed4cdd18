"""The architectures on synthetic_recsys: ctr and cvr test AUC and served parameters, by seed.

Every architecture reads the same FeatureSpec (``datasets.synthetic_recsys_spec``: user, item,
category, device, price, click history) with its builder's defaults, trains with Adam, and the
searched ones (AdaShare, Learning to Branch, MTL-NAS) search, are frozen and fine-tuned as in
``quality_census.py`` (whose ``build``, ``fit_architecture`` and ``serving_parameters`` this uses).
Configurations: Shared-Bottom, Cross-Stitch, OMoE, MMoE, MMoE and PLE with DSelect-k gates, PLE,
SNR, NDDR, MTAN, AdaShare, Learning to Branch, MTL-NAS, and the recommender ones: ESMM, AITM
(funnel click -> click-and-convert), PEPNet (the user and item ids as prior features, embedded
for its gates) and DBMTL. Most train ctr and cvr, the cvr label masked off unclicked impressions;
ESMM and AITM model the impression space instead, trained on ctr and ctcvr (click and conversion),
and their cvr is ctcvr / ctr (ESMM's cvr head is that ratio by construction).
Metrics: ctr AUC on every test impression, cvr AUC on the clicked ones (conversions are observed
after a click only), next to the AUC of the true probabilities (the ceiling).

One JSON file per (configuration, seed) goes under ``--out-dir`` as it finishes, so an
interrupted run resumes where it stopped; the table (mean ± std over seeds) is made from
whatever files exist there, and ``--out`` also writes every row in one JSON.

    python benchmarks/architectures_recsys.py [--configs nddr mtan ...] [--seeds 0 1 2] [--samples 40000]
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

from mtl_keras import datasets
from mtl_keras import features as F
from mtl_keras import models
from mtl_keras.backend import keras
from mtl_keras.datasets import synthetic_recsys_spec
from mtl_keras.evaluation import auc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # quality_census sits next to this file, also when the tests load it by path
from quality_census import build as census_build, fit_architecture, serving_parameters  # noqa: E402

DEFAULT_OUT_DIR = os.path.join(HERE, "results", "architectures_recsys")
TASKS = ["ctr", "cvr"]
FUNNEL = ["ctr", "ctcvr"]  # AITM's steps: a click, then a click and a conversion
PRIOR = ["user_id", "item_id"]  # PEPNet's prior features
CONFIGS = ["shared_bottom", "cross_stitch", "omoe", "mmoe", "mmoe_dselect_k", "ple", "ple_dselect_k", "snr",
           "nddr", "mtan", "adashare", "learning_to_branch", "mtl_nas", "esmm", "aitm", "pepnet", "dbmtl",
           "nddr_no_bn", "mtl_nas_no_bn"]
IMPRESSION_SPACE = ("esmm", "aitm")  # trained on ctr and ctcvr; cvr = ctcvr / ctr
SETTINGS = ("samples", "epochs", "batch_size", "learning_rate", "users", "items")  # recorded with each run


def build(config, spec, steps_per_epoch=100):
    """The configuration's model on ``spec``; ``steps_per_epoch`` paces the searched ones' schedules."""
    if config == "esmm":
        return models.esmm(spec)
    if config == "aitm":
        return models.aitm(spec, FUNNEL)
    if config == "pepnet":
        return models.pepnet(spec, PRIOR, TASKS)
    return census_build(config, spec, TASKS, steps_per_epoch=steps_per_epoch)


def losses(config):
    """The compile losses by head: the heads trained and their labels' names in ``synthetic_recsys``'s y."""
    if config == "esmm":
        return {"ctr": "binary_crossentropy", "cvr": None, "ctcvr": "binary_crossentropy"}
    return {task: "binary_crossentropy" for task in (FUNNEL if config in IMPRESSION_SPACE else TASKS)}


def conversion(predicted):
    """P(conversion | click) from the model's outputs."""
    if "cvr" in predicted:
        return np.asarray(predicted["cvr"]).ravel()
    return np.asarray(predicted["ctcvr"]).ravel() / np.maximum(np.asarray(predicted["ctr"]).ravel(), 1e-7)


def split(seed, args):
    """(train columns, test columns, labels, true probabilities, training rows) of one seed's data."""
    x, y, truth = datasets.synthetic_recsys(
        args.samples, seed=seed, num_users=args.users, num_items=args.items, return_probabilities=True
    )
    n = int(0.8 * args.samples)
    return {k: v[:n] for k, v in x.items()}, {k: v[n:] for k, v in x.items()}, y, truth, n


def run(config, seed, args, data=None):
    """One configuration and seed: the row of the table (AUCs, ceilings, served parameters)."""
    train, test, y, truth, n = data or split(seed, args)
    keras.utils.set_random_seed(seed)
    model = build(config, synthetic_recsys_spec(train), steps_per_epoch=-(-n // args.batch_size))
    heads = losses(config)
    histories, structure = fit_architecture(
        model, config,
        lambda m: m.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss=heads),
        lambda m: m.fit(F.prepare_inputs(m, train), {t: y[t][:n] for t, loss in heads.items() if loss},
                        batch_size=args.batch_size, epochs=args.epochs, verbose=0),
    )
    feed = F.prepare_inputs(model, test)
    predicted = model.predict(feed, batch_size=4096, verbose=0)
    clicked = y["ctr"][n:].ravel() == 1
    return {
        "config": config, "seed": seed,
        "ctr_auc": auc(y["ctr"][n:], predicted["ctr"]),
        "cvr_auc_clicked": auc(y["cvr"][n:].ravel()[clicked], conversion(predicted)[clicked]),
        "ctr_ceiling": auc(y["ctr"][n:], truth["ctr"][n:]),
        "cvr_ceiling": auc(y["cvr"][n:].ravel()[clicked], truth["cvr"][n:].ravel()[clicked]),
        "params": serving_parameters(model, feed), "structure": structure,
        "epochs": sum(len(h.history["loss"]) for h in histories),
        "settings": {k: getattr(args, k) for k in SETTINGS},
        "keras": keras.__name__,
    }


def load_rows(out_dir):
    """Every run file's row under ``out_dir``."""
    rows = []
    for path in sorted(glob.glob(os.path.join(out_dir, "*_s*.json"))):
        with open(path) as handle:
            rows.append(json.load(handle))
    return rows


def format_table(rows):
    """The markdown table of ``rows`` (mean ± std over seeds), configurations in ``CONFIGS``' order."""
    settings = sorted({json.dumps(r.get("settings", {}), sort_keys=True) for r in rows})
    lines = [f"\nsynthetic_recsys: mean ± std over seeds (settings seen: {'; '.join(settings)})",
             "| configuration | seeds | ctr AUC | cvr AUC (clicked) | params |", "|---|---|---|---|---|"]
    for config in CONFIGS:
        mine = [r for r in rows if r["config"] == config]
        if not mine:
            continue
        stat = lambda key: f"{np.mean([r[key] for r in mine]):.4f} ± {np.std([r[key] for r in mine]):.4f}"  # noqa
        params = "/".join(str(p) for p in sorted({r["params"] for r in mine}))
        lines.append(f"| {config} | {len(mine)} | {stat('ctr_auc')} | {stat('cvr_auc_clicked')} | {params} |")
    if rows:
        lines.append(f"true probabilities: ctr {np.mean([r['ctr_ceiling'] for r in rows]):.4f}, "
                     f"cvr|click {np.mean([r['cvr_ceiling'] for r in rows]):.4f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=2, help="per phase (searched: search, then fine-tune)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--out-dir", default=DEFAULT_OUT_DIR, help="folder of per-run JSON files (resumable)")
    parser.add_argument("--out", default=None, help="also write every row of --out-dir in one JSON")
    parser.add_argument("--table-only", action="store_true", help="print the table of the files in --out-dir")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    started = time.time()
    for seed in ([] if args.table_only else args.seeds):  # seed-major: every configuration gets a seed first
        data = None
        for config in args.configs:
            path = os.path.join(args.out_dir, f"{config}_s{seed}.json")
            if os.path.exists(path):
                continue
            data = data or split(seed, args)
            start = time.perf_counter()
            row = run(config, seed, args, data)
            row["seconds"] = round(time.perf_counter() - start, 1)
            with open(path + ".tmp", "w") as handle:
                json.dump(row, handle, indent=1)
            os.replace(path + ".tmp", path)
            print(f"seed {seed} {config}: ctr {row['ctr_auc']:.4f} cvr|click {row['cvr_auc_clicked']:.4f} "
                  f"params {row['params']} ({row['seconds']} s)", flush=True)
    rows = load_rows(args.out_dir)
    print(format_table(rows))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"benchmark": "architectures_recsys", "args": vars(args), "rows": rows,
                       "ceiling": {k: float(np.mean([r[k] for r in rows])) for k in ("ctr_ceiling", "cvr_ceiling")},
                       "keras": keras.__name__, "seconds": time.time() - started}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
