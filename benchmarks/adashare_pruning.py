"""Serving latency of a frozen AdaShare export whose tasks skip half of the blocks vs one that runs all.

Both models have the same weights (4 tasks, a 256-wide stem, 8 residual blocks of 256); only the
frozen policy differs: "all blocks" selects every block for every task, "half skipped" lets task k
run 4 of the 8 blocks (a different half per task). Exports are timed side by side, interleaved, at
batch 1 and 256: one task's signature (it computes only its task's blocks) and serving_default
(every task; tasks with the same selected blocks so far share them, so "all blocks" computes each
block once while the halves overlap less). Prints pruned / full ratios. A last table compares the
pruned model with the same network still searching (no export: a graph of its inference, which runs
every block for every task with the policy's hard 0/1 weights), both as tf.functions.

    python benchmarks/adashare_pruning.py [--calls 200] [--out FILE]
"""

import tempfile

import numpy as np

from mtl_keras import export, models
from mtl_keras.backend import keras, tf
from timing.latency import arguments, features, interleaved_ms, write_rows

TASKS = ["ctr", "cvr", "like", "share"]
HALVES = [[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 1], [1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]]


def build(policy, width):
    keras.utils.set_random_seed(0)  # the same weights for both policies
    return models.adashare(keras.Input((width,), name="features"), TASKS, units=width, num_blocks=8,
                           tower_units=(32,), policy=policy)


def main():
    args = arguments(__doc__.split("\n")[0])
    base = tempfile.mkdtemp(prefix="adashare-pruning-")
    loaded = {
        name: tf.saved_model.load(export.export_saved_model(build(policy, args.width), f"{base}/{name}"))
        for name, policy in (("full", [[1] * 8] * 4), ("pruned", HALVES))
    }
    rows = []
    print(f"AdaShare, 4 tasks, 8 blocks of {args.width}, median of {args.calls} calls (ms)")
    print(f"{'batch':>6} {'signature':>16} {'all blocks':>11} {'half skipped':>13} {'ratio':>7}")
    for batch in (1, 256):
        feed = {"features": features(batch, args.width)}
        for signature in ("ctr", "serving_default"):
            ms = interleaved_ms({name: model.signatures[signature] for name, model in loaded.items()}, feed,
                                args.calls)
            full, pruned = ms["full"], ms["pruned"]
            rows.append({"batch": batch, "signature": signature, "full_ms": full, "pruned_ms": pruned,
                         "ratio": pruned / full})
            print(f"{batch:>6} {signature:>16} {full:11.3f} {pruned:13.3f} {pruned / full:7.2f}")
    searching = build(None, args.width)
    layer = searching.get_layer("adashare")
    logits = np.zeros((4, 8, 2), "float32")
    logits[..., 0] = np.array(HALVES, "float32")  # the most likely policy is HALVES
    layer.policy_logits.assign(logits)
    layer.curriculum = False
    graphs = {
        "searching": tf.function(lambda x: searching(x, training=False)),
        "pruned": tf.function(lambda x, model=build(HALVES, args.width): model(x, training=False)),
    }
    print(f"{'batch':>6} {'searching ms':>13} {'pruned ms':>10} {'ratio':>7}   (serving_default's work, tf.function)")
    for batch in (1, 256):
        ms = interleaved_ms(graphs, {"x": features(batch, args.width)}, args.calls)
        searched, pruned = ms["searching"], ms["pruned"]
        rows.append({"batch": batch, "signature": "searching vs pruned (tf.function)", "full_ms": searched,
                     "pruned_ms": pruned, "ratio": pruned / searched})
        print(f"{batch:>6} {searched:13.3f} {pruned:10.3f} {pruned / searched:7.2f}")
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()
