"""First expert layer: broadcast matmul (what ExpertStack does) vs the einsum it replaced.

``einsum("bd,edh->beh")`` transposes the whole [E, D, H] kernel on every call;
``matmul(x[None], kernel)`` reads it in place and transposes the [E, B, H]
output instead, which is far smaller at serving batch sizes. Forward at batch
1/64/1024 and forward+backward at 128/1024/4096, interleaved; prints
matmul/einsum time ratios (below 1: the matmul is faster).

    python benchmarks/expert_layout.py [--experts 8 --width 256]
"""

import argparse
import time

import numpy as np
import tensorflow as tf


def timed(function, x, repeats):
    start = time.perf_counter()
    for _ in range(repeats):
        function(x)
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    e, d = args.experts, args.width
    kernel = tf.Variable(np.random.default_rng(0).normal(size=(e, d, d)).astype("float32"))
    layers = {
        "einsum": lambda x: tf.einsum("bd,edh->beh", x, kernel),
        "matmul": lambda x: tf.transpose(tf.matmul(x[None], kernel), [1, 0, 2]),
    }

    def forward(layer):
        return tf.function(layer)

    def training(layer):
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(tf.square(layer(x)))
            return tape.gradient(loss, [kernel, x])

        return step

    x = tf.random.normal([3, d])
    np.testing.assert_allclose(layers["einsum"](x), layers["matmul"](x), rtol=1e-4, atol=1e-4)
    print(f"{e} experts, {d} -> {d}; median of {args.rounds} interleaved rounds")
    for mode, wrap, batches in (("forward", forward, (1, 64, 1024)), ("fwd+bwd", training, (128, 1024, 4096))):
        for batch in batches:
            x = tf.random.normal([batch, d])
            functions = {name: wrap(layer) for name, layer in layers.items()}
            repeats = max(2, 4096 // batch)
            for function in functions.values():
                timed(function, x, 3)
            samples = {name: [] for name in functions}
            for _ in range(args.rounds):
                for name, function in functions.items():
                    samples[name].append(timed(function, x, repeats))
            einsum, matmul = (float(np.median(samples[n])) * 1000 for n in ("einsum", "matmul"))
            print(f"{mode:8s} batch {batch:5d}: einsum {einsum:8.3f} ms, matmul {matmul:8.3f} ms, "
                  f"ratio {matmul / einsum:.2f}")


if __name__ == "__main__":
    main()
