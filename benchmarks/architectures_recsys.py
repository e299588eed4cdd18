"""The sharing architectures on synthetic_recsys: ctr and cvr test AUC and served parameters, by seed.

Every architecture reads the same FeatureSpec (``datasets.synthetic_recsys_spec``: user, item,
category, device, price, click history) with its builder's defaults, trains with Adam, and the
searched ones (AdaShare, Learning to Branch, MTL-NAS) search, are frozen and fine-tuned as in
``quality_census.py`` (whose ``build``, ``fit_architecture`` and ``serving_parameters`` this uses).
Metrics: ctr AUC on every test impression, cvr AUC on the clicked ones (conversions are observed
after a click only), next to the AUC of the true probabilities (the ceiling). Prints a table
(mean ± std over seeds) and writes JSON.

    python benchmarks/architectures_recsys.py [--configs nddr mtan ...] [--seeds 0 1 2] [--samples 40000]
"""

import argparse
import json
import time

import numpy as np

from mtl_keras import datasets
from mtl_keras import features as F
from mtl_keras.backend import keras
from mtl_keras.datasets import synthetic_recsys_spec
from mtl_keras.evaluation import auc
from quality_census import build, fit_architecture, serving_parameters

TASKS = ["ctr", "cvr"]
CONFIGS = ["shared_bottom", "mmoe", "cross_stitch", "nddr", "mtan", "adashare", "learning_to_branch", "mtl_nas"]


def run(config, seed, args):
    keras.utils.set_random_seed(seed)
    x, y, truth = datasets.synthetic_recsys(
        args.samples, seed=seed, num_users=args.users, num_items=args.items, return_probabilities=True
    )
    n = int(0.8 * args.samples)
    train = {k: v[:n] for k, v in x.items()}
    test = {k: v[n:] for k, v in x.items()}
    model = build(config, synthetic_recsys_spec(train), TASKS, steps_per_epoch=-(-n // args.batch_size))
    histories, structure = fit_architecture(
        model, config,
        lambda m: m.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                            loss={t: "binary_crossentropy" for t in TASKS}),
        lambda m: m.fit(F.prepare_inputs(m, train), {t: y[t][:n] for t in TASKS}, batch_size=args.batch_size,
                        epochs=args.epochs, verbose=0),
    )
    feed = F.prepare_inputs(model, test)
    predicted = model.predict(feed, batch_size=4096, verbose=0)
    clicked = y["ctr"][n:].ravel() == 1
    return {
        "config": config, "seed": seed,
        "ctr_auc": auc(y["ctr"][n:], predicted["ctr"]),
        "cvr_auc_clicked": auc(y["cvr"][n:].ravel()[clicked], np.asarray(predicted["cvr"]).ravel()[clicked]),
        "ctr_ceiling": auc(y["ctr"][n:], truth["ctr"][n:]),
        "cvr_ceiling": auc(y["cvr"][n:].ravel()[clicked], truth["cvr"][n:].ravel()[clicked]),
        "params": serving_parameters(model, feed), "structure": structure,
        "epochs": sum(len(h.history["loss"]) for h in histories),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=2, help="per phase (searched: search, then fine-tune)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows, started = [], time.time()
    for seed in args.seeds:  # seed-major: every configuration gets a seed before any gets two
        for config in args.configs:
            row = run(config, seed, args)
            rows.append(row)
            print(f"seed {seed} {config}: ctr {row['ctr_auc']:.4f} cvr|click {row['cvr_auc_clicked']:.4f} "
                  f"params {row['params']}", flush=True)
    print(f"\nsynthetic_recsys ({args.samples} impressions, {args.epochs} epochs a phase): mean ± std over seeds")
    print("| configuration | seeds | ctr AUC | cvr AUC (clicked) | params |")
    print("|---|---|---|---|---|")
    for config in args.configs:
        mine = [r for r in rows if r["config"] == config]
        stat = lambda key: f"{np.mean([r[key] for r in mine]):.4f} ± {np.std([r[key] for r in mine]):.4f}"  # noqa: E731
        params = "/".join(str(p) for p in sorted({r["params"] for r in mine}))
        print(f"| {config} | {len(mine)} | {stat('ctr_auc')} | {stat('cvr_auc_clicked')} | {params} |")
    ceiling = {k: float(np.mean([r[k] for r in rows])) for k in ("ctr_ceiling", "cvr_ceiling")}
    print(f"true probabilities: ctr {ceiling['ctr_ceiling']:.4f}, cvr|click {ceiling['cvr_ceiling']:.4f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"benchmark": "architectures_recsys", "args": vars(args), "rows": rows, "ceiling": ceiling,
                       "keras": keras.__name__, "seconds": time.time() - started}, handle, indent=2)


if __name__ == "__main__":
    main()
