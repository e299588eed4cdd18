"""Training speed of large hashed embedding tables: FeatureSpec vs one-hot inputs vs DeepCTR.

Two id features hashed into ``--buckets`` rows (default 10^6) of 16 dimensions
feed the same MMoE top (8 experts of 64 units, 2 tasks, towers of 8):

- ``feature_spec``: raw int64 ids through ``FeatureSpec`` (Hashing -> Embedding);
- ``feature_spec_plain``: the same graph as a plain ``keras.Model`` (its fit,
  not MultiTaskModel's train step: the difference is the multi-task step's cost);
- ``one_hot_sparse``: the same information as one-hot rows, a ``tf.SparseTensor``
  [B, buckets] per feature into a bias-free ``Dense(16)`` (mathematically the
  embedding; a dense one-hot of 10^6 columns would need 4 GB a 1024 batch);
- ``one_hot_dense``: dense one-hot at ``--dense_buckets`` rows (default 2^14), to
  show what a dense input costs even at a small vocabulary;
- ``deepctr``: DeepCTR 0.9.4's ``MMOE`` with ``SparseFeat`` columns of the same
  shapes (tf_keras only: ``TF_USE_LEGACY_KERAS=1``; ``pip install --no-deps deepctr==0.9.4``).

Each variant is timed in ``fit`` over ``--examples`` rows after one warm-up
epoch, in interleaved rounds; the table shows median examples/s and the ratio
to ``feature_spec``. Writes JSON with ``--out``. The optimizer matters most:
Keras' Adam (both Kerases) decays the moments of every row at every step, so
a 10^6-row table costs a full pass over 16M floats a step; SGD touches only
the rows the batch read.

    python benchmarks/embeddings.py [--examples 65536] [--rounds 3] [--out FILE]
"""

import argparse
import json
import statistics
import time

import numpy as np

from mtl_keras import MultiTaskModel
from mtl_keras import features as F
from mtl_keras.backend import USE_LEGACY_KERAS, keras, tf
from mtl_keras.layers import ExpertGate

TASKS = ["ctr", "cvr"]
FEATURES = ["user_id", "item_id"]
DIM = 16


def top(inputs, features):
    """The MMoE every variant but DeepCTR's shares: experts, gates, towers, sigmoid heads."""
    mixed = ExpertGate(8, (64,), len(TASKS), name="mmoe")(features)
    outputs = {}
    for task, x in zip(TASKS, mixed):
        hidden = keras.layers.Dense(8, activation="relu", name=f"{task}_tower")(x)
        outputs[task] = keras.layers.Dense(1, activation="sigmoid", name=task)(hidden)
    return MultiTaskModel(inputs, outputs)


def feature_spec_model(buckets):
    spec = F.FeatureSpec([F.Categorical(n, num_buckets=buckets, embedding_dim=DIM, dtype="int64") for n in FEATURES])
    views = spec.views(TASKS)
    return top(views.inputs, views.shared)


def one_hot_model(buckets, sparse):
    inputs = {n: keras.Input((buckets,), sparse=sparse, name=n) for n in FEATURES}
    embedded = [keras.layers.Dense(DIM, use_bias=False, name=f"{n}_one_hot")(inputs[n]) for n in FEATURES]
    return top(inputs, keras.layers.Concatenate()(embedded))


def deepctr_model(buckets):
    from deepctr.feature_column import SparseFeat
    from deepctr.models import MMOE

    columns = [SparseFeat(n, vocabulary_size=buckets, embedding_dim=DIM) for n in FEATURES]
    return MMOE(columns, num_experts=8, expert_dnn_hidden_units=(64,), tower_dnn_hidden_units=(8,),
                task_types=("binary", "binary"), task_names=TASKS)


def dataset(kind, ids, labels, buckets, batch_size):
    """Batches of what each variant reads: raw ids, hashed rows, or one-hot rows."""
    rows = {n: ids[n] % buckets for n in FEATURES}  # the variants that take rows get them pre-hashed

    def one_hot(x, y):
        encode = lambda r: tf.SparseTensor(  # noqa: E731
            tf.stack([tf.range(tf.shape(r, out_type=tf.int64)[0]), r], axis=1),
            tf.ones_like(r, tf.float32), [tf.shape(r, out_type=tf.int64)[0], buckets])
        x = {n: encode(v) for n, v in x.items()}
        if kind == "one_hot_dense":
            x = {n: tf.sparse.to_dense(v) for n, v in x.items()}
        return x, y

    source = ids if kind.startswith("feature_spec") else rows
    data = tf.data.Dataset.from_tensor_slices((source, labels)).batch(batch_size)
    if kind.startswith("one_hot"):
        data = data.map(one_hot)
    return data.cache().prefetch(tf.data.AUTOTUNE) if kind == "one_hot_dense" else data.prefetch(tf.data.AUTOTUNE)


def build(kind, args):
    if kind == "feature_spec":
        return feature_spec_model(args.buckets)
    if kind == "feature_spec_plain":
        model = feature_spec_model(args.buckets)
        return keras.Model(model.inputs, {t: model.get_layer(t).output for t in TASKS})
    if kind == "one_hot_sparse":
        return one_hot_model(args.buckets, sparse=True)
    if kind == "one_hot_dense":
        return one_hot_model(args.dense_buckets, sparse=False)
    return deepctr_model(args.buckets)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=65536)
    parser.add_argument("--batch_size", type=int, default=1024)
    parser.add_argument("--buckets", type=int, default=1_000_000)
    parser.add_argument("--dense_buckets", type=int, default=1 << 14)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--optimizer", default="sgd",
                        help="sgd updates only the rows a batch read; adam rewrites every row's moments each step")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    ids = {n: rng.integers(0, 10**12, args.examples).astype(np.int64) for n in FEATURES}
    labels = {t: rng.integers(0, 2, (args.examples, 1)).astype(np.float32) for t in TASKS}
    kinds = ["feature_spec", "feature_spec_plain", "one_hot_sparse", "one_hot_dense"] + (["deepctr"] if USE_LEGACY_KERAS else [])
    setups = {}
    for kind in kinds:
        model = build(kind, args)
        # No XLA for any variant: sparse one-hot ops and string lookups have no XLA kernels.
        model.compile(optimizer=args.optimizer, loss={t: "binary_crossentropy" for t in TASKS}, jit_compile=False)
        buckets = args.dense_buckets if kind == "one_hot_dense" else args.buckets
        data = dataset(kind, ids, labels, buckets, args.batch_size)
        model.fit(data, epochs=1, verbose=0)  # warm-up: tracing, table allocation
        setups[kind] = (model, data)
    speeds = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:  # interleaved, so drifts in machine load hit every variant alike
            model, data = setups[kind]
            start = time.perf_counter()
            model.fit(data, epochs=1, verbose=0)
            speeds[kind].append(args.examples / (time.perf_counter() - start))
    base = statistics.median(speeds["feature_spec"])
    print(f"{'variant':16s} {'examples/s':>12s} {'vs feature_spec':>16s}   "
          f"({args.buckets} x {DIM} tables, batch {args.batch_size}, {args.optimizer})")
    rows = []
    for kind in kinds:
        median = statistics.median(speeds[kind])
        rows.append({"variant": kind, "examples_per_s": median, "ratio": median / base, "rounds": speeds[kind]})
        print(f"{kind:16s} {median:12.0f} {median / base:16.2f}")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"benchmark": "embeddings", "keras": "tf_keras" if USE_LEGACY_KERAS else "keras3",
                       "optimizer": args.optimizer,
                       "buckets": args.buckets, "dense_buckets": args.dense_buckets, "dim": DIM,
                       "batch_size": args.batch_size, "examples": args.examples, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
