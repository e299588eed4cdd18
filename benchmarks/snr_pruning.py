"""Serving latency of an SNR export with half of its routes closed vs all open.

Both exports come from the same model in this one process (the closed routes
are set by log_alpha, so z_hat = 0 on every other input of each router) and are
timed side by side, interleaved, at batch 1 and 256. Prints the ratios.

    python benchmarks/snr_pruning.py [--calls 200] [--out FILE]
"""

import tempfile

import numpy as np

from mtl_keras import export, models
from mtl_keras.backend import keras, tf
from mtl_keras.layers import HardConcreteRouter
from timing.latency import arguments, features, interleaved_ms, write_rows


def main():
    args = arguments(__doc__.split("\n")[0])
    keras.utils.set_random_seed(0)
    model = models.snr(keras.Input((args.width,), name="features"), ["ctr", "cvr", "like", "share"],
                       num_subnetworks=(4, 4), subnetwork_units=(args.width,), tower_units=(32,))
    base = tempfile.mkdtemp(prefix="snr-pruning-")
    open_path = export.export_saved_model(model, base)
    for router in (layer for layer in model.layers if isinstance(layer, HardConcreteRouter)):
        alpha = np.full(router.log_alpha.shape, 3.0, "float32")
        alpha[:, ::2] = -30.0
        router.log_alpha.assign(alpha)
    pruned_path = export.export_saved_model(model, base)
    signatures = {
        "all routes open": tf.saved_model.load(open_path).signatures["serving_default"],
        "half the routes closed": tf.saved_model.load(pruned_path).signatures["serving_default"],
    }
    rows = []
    print(f"SNR-Trans, 4 -> 4 -> 4 tasks, sub-networks of {args.width}, median of {args.calls} calls")
    print(f"{'batch':>6} {'open ms':>9} {'pruned ms':>10} {'ratio':>7}")
    for batch in (1, 256):
        ms = interleaved_ms(signatures, {"features": features(batch, args.width)}, args.calls)
        opened, pruned = ms["all routes open"], ms["half the routes closed"]
        rows.append({"batch": batch, "open_ms": opened, "pruned_ms": pruned, "ratio": pruned / opened})
        print(f"{batch:>6} {opened:9.3f} {pruned:10.3f} {pruned / opened:7.2f}")
    write_rows(rows, args.out)


if __name__ == "__main__":
    main()
