"""Does sharing sparse embeddings help the sparse task? MMoE on ctr + cvr vs a cvr-only model.

On ``synthetic_recsys`` conversions are observed only after a click (a few
per cent of impressions). Both models read the same FeatureSpec (user, item,
category, device, price, click history through the item table) with the
same MMoE shape; the multi-task model learns its embeddings from clicks and
conversions, the single-task one from conversions alone (its cvr labels are
the same; NaN = not observed, masked). Metric: cvr AUC on the test split's
clicked impressions, per seed, next to the AUC of the true probabilities
(the ceiling). Prints a table and writes JSON.

    python benchmarks/recsys_sharing.py [--seeds 0 1 2] [--samples 40000] [--out FILE]
"""

import argparse
import json
import time

import numpy as np

from mtl_keras import datasets, models
from mtl_keras import features as F
from mtl_keras.datasets import synthetic_recsys_spec
from mtl_keras.backend import keras
from mtl_keras.evaluation import auc


def split(x, y, fraction=0.8):
    n = int(len(y["ctr"]) * fraction)
    head = lambda d: {k: v[:n] for k, v in d.items()}  # noqa: E731
    tail = lambda d: {k: v[n:] for k, v in d.items()}  # noqa: E731
    return (head(x), head(y)), (tail(x), tail(y))


def run(seed, args, tasks):
    keras.utils.set_random_seed(seed)
    x, y, truth = datasets.synthetic_recsys(
        args.samples, seed=seed, num_users=args.users, num_items=args.items, return_probabilities=True
    )
    (x_train, y_train), (x_test, y_test) = split(x, y)
    clicked = y_test["ctr"].ravel() == 1
    labels = y_test["cvr"].ravel()[clicked]
    oracle = auc(labels, split(x, truth)[1][1]["cvr"].ravel()[clicked])
    model = models.mmoe(synthetic_recsys_spec(x_train), tasks, num_experts=4, expert_units=(32,), tower_units=(16,))
    model.compile(optimizer=keras.optimizers.Adam(0.002), loss={t: "binary_crossentropy" for t in tasks})
    model.fit(F.prepare_inputs(model, x_train), {t: y_train[t] for t in tasks},
              batch_size=256, epochs=args.epochs, verbose=0)
    predicted = model.predict(F.prepare_inputs(model, x_test), batch_size=4096, verbose=0)["cvr"]
    return auc(labels, np.asarray(predicted).ravel()[clicked]), oracle


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samples", type=int, default=40000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    started = time.time()
    for seed in args.seeds:
        shared, oracle = run(seed, args, ["ctr", "cvr"])
        single, _ = run(seed, args, ["cvr"])
        rows.append({"seed": seed, "mmoe_shared_cvr_auc": shared, "single_task_cvr_auc": single,
                     "gain": shared - single, "true_probability_auc": oracle})
        print(f"seed {seed}: cvr AUC  MMoE shared embeddings {shared:.4f}  single-task {single:.4f}  "
              f"gain {shared - single:+.4f}  (true probabilities {oracle:.4f})", flush=True)
    gains = [r["gain"] for r in rows]
    summary = {"mean_gain": float(np.mean(gains)), "min_gain": float(np.min(gains)),
               "seeds_won": int(sum(g > 0 for g in gains)), "seconds": time.time() - started}
    print(json.dumps(summary))
    result = {"benchmark": "recsys_sharing", "samples": args.samples, "epochs": args.epochs,
              "users": args.users, "items": args.items,
              "keras": keras.__name__, "rows": rows, "summary": summary}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
