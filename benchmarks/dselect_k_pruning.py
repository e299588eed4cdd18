"""Serving latency of a PLE export whose static DSelect-k gates converged (only the selected experts
computed) vs the same model exported before they converged (every expert computed).

A 2-level PLE, 2 tasks, 8 experts per task and 8 shared per level, experts of one ``--width`` layer,
``gate="dselect_k_static"`` with k = 1 and 2. The first export is taken at initialisation, where
every selector is still inside the smooth step (nothing prunable); then each gate's selectors are
set on k random experts it sees, as training converges them, and the model is exported again.
Both SavedModels' ``serving_default`` are timed side by side, interleaved, at batch 1 and 256.
Prints the pruned / unpruned ratios.

    python benchmarks/dselect_k_pruning.py [--calls 200] [--out FILE]
"""

import tempfile

import numpy as np

from mtl_keras import export, models
from mtl_keras.backend import keras, tf
from mtl_keras.layers.dselect_k import binary_codes
from timing.latency import arguments, features, interleaved_ms, write_rows

TASKS = ["ctr", "cvr"]
EXPERTS = 8


def converge(ple, k, rng):
    """Every selector outside the smooth step's cubic part, on k distinct experts per gate."""
    for level in ple.levels:
        for gate in level.task_dselect_gates + (level.shared_dselect_gates or []):
            chosen = rng.choice(gate.num_experts, size=k, replace=False)
            gate.z_bias.assign((2.0 * binary_codes(gate.num_experts)[chosen] - 1.0).reshape(-1))


def main():
    args = arguments(__doc__.split("\n")[0])
    rows = []
    print(f"PLE, 2 levels, {len(TASKS)} tasks, {EXPERTS} experts per task and {EXPERTS} shared, "
          f"experts of {args.width}, median of {args.calls} calls")
    print(f"{'k':>3} {'batch':>6} {'unpruned ms':>12} {'pruned ms':>10} {'ratio':>7} {'experts computed':>17}")
    for k in (1, 2):
        keras.utils.set_random_seed(0)
        model = models.ple(keras.Input((args.width,), name="features"), TASKS, num_task_experts=EXPERTS,
                           num_shared_experts=EXPERTS, expert_units=(args.width,), tower_units=(32,),
                           gate="dselect_k_static", k=k)
        base = tempfile.mkdtemp(prefix="dselect-k-pruning-")
        unpruned_path = export.export_saved_model(model, base)
        ple = model.get_layer("ple")
        converge(ple, k, np.random.default_rng(k))
        pruned_path = export.export_saved_model(model, base)
        for level in ple.levels:  # what the export froze, to count the experts it computes
            level.freeze()
        computed = sum(int(level.frozen.any(axis=0).sum()) for level in ple.levels)
        for level in ple.levels:
            level.unfreeze()
        total = len(ple.levels) * (len(TASKS) + 1) * EXPERTS
        signatures = {
            "unpruned": tf.saved_model.load(unpruned_path).signatures["serving_default"],
            "pruned": tf.saved_model.load(pruned_path).signatures["serving_default"],
        }
        for batch in (1, 256):
            ms = interleaved_ms(signatures, {"features": features(batch, args.width)}, args.calls)
            ratio = ms["pruned"] / ms["unpruned"]
            rows.append({"k": k, "batch": batch, "unpruned_ms": ms["unpruned"], "pruned_ms": ms["pruned"],
                         "ratio": ratio, "experts_computed": computed, "experts": total})
            print(f"{k:>3} {batch:>6} {ms['unpruned']:12.3f} {ms['pruned']:10.3f} {ratio:7.2f} "
                  f"{computed:>9} of {total}")
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()
