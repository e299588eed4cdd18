"""TensorFlow Recommenders + mtl_keras: retrieval, rating and watched on shared towers.

A TFRS two-tower model (user and movie embeddings) with three tasks, as in
TFRS's multitask tutorial but with the task weights learnt (uncertainty
weighting) and the shared towers' per-task gradients projected (PCGrad)
instead of hand-set ``rating_weight`` / ``retrieval_weight``:

- retrieval: in-batch softmax (``tfrs.tasks.Retrieval``), evaluated with
  ``FactorizedTopK`` over every movie;
- rating: regression of the 1..5 rating (``tfrs.tasks.Ranking``, RMSE);
- watched: whether the movie was watched to the end (binary, AUC).

On synthetic MovieLens-like interactions (``mtl_keras.tfrs.movielens_like``),
it trains, exports (ranking heads, query embedding and a brute-force top-k
over every movie, ``mtl_keras.tfrs.export_recommender``), serves the export
with ``mtl_keras.serving`` and queries it, checking the served answers equal
the Keras model's.

    python examples/tfrs_multitask.py            # ~ML-100k sized, 5 epochs
    python examples/tfrs_multitask.py --quick    # the reduced form CI runs
    python examples/tfrs_multitask.py --weighting equal --projection none   # TFRS's plain sum
"""

import os

# TFRS 0.7.7 imports only when tf.keras is Keras 2: set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

from mtl_keras.backend import keras  # noqa: E402
from mtl_keras.serving import PredictClient  # noqa: E402
from mtl_keras.serving.servables import ModelVersions  # noqa: E402
from mtl_keras.serving.server import Server  # noqa: E402
from mtl_keras.tfrs import MultiTaskMixin, export_recommender, movielens_like  # noqa: E402

TOP_100 = "factorized_top_k/top_100_categorical_accuracy"
TOP_10 = "factorized_top_k/top_10_categorical_accuracy"


class MovielensModel(MultiTaskMixin, tfrs.Model):
    def __init__(self, user_ids, movie_ids, dim=32):
        super().__init__()
        self.user_model = keras.Sequential([
            keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
            keras.layers.Embedding(len(user_ids) + 1, dim),
        ], name="user_model")
        self.movie_model = keras.Sequential([
            keras.layers.StringLookup(vocabulary=movie_ids, mask_token=None),
            keras.layers.Embedding(len(movie_ids) + 1, dim),
        ], name="movie_model")
        self.rating_model = keras.Sequential(
            [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)], name="rating_model")
        self.watched_model = keras.Sequential(
            [keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1, activation="sigmoid")],
            name="watched_model")
        candidates = tf.data.Dataset.from_tensor_slices(movie_ids).batch(256).map(self.movie_model)
        self.retrieval_task = tfrs.tasks.Retrieval(
            # Mean over the batch, as the ranking losses are (TFRS's default sums).
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=tfrs.metrics.FactorizedTopK(candidates=candidates, ks=(10, 100)),
        )
        self.rating_task = tfrs.tasks.Ranking(
            loss=keras.losses.MeanSquaredError(), metrics=[keras.metrics.RootMeanSquaredError("rating_rmse")])
        self.watched_task = tfrs.tasks.Ranking(
            loss=keras.losses.BinaryCrossentropy(), metrics=[keras.metrics.AUC(name="watched_auc")])

    def towers(self, features):
        return self.user_model(features["user_id"]), self.movie_model(features["movie_id"])

    def call(self, features, training=False):
        users, movies = self.towers(features)
        both = tf.concat([users, movies], axis=1)
        return {"rating": self.rating_model(both), "watched": self.watched_model(both)}

    def compute_loss(self, features, training=False):
        users, movies = self.towers(features)
        heads = self(features, training=training)
        return {
            "retrieval": self.retrieval_task(users, movies, compute_metrics=not training),
            "rating": self.rating_task(labels=features["user_rating"], predictions=heads["rating"]),
            "watched": self.watched_task(labels=features["watched"], predictions=heads["watched"]),
        }


def figures(logs, prefix=""):
    return {
        "top_10": float(logs[prefix + TOP_10]), "top_100": float(logs[prefix + TOP_100]),
        "rating_rmse": float(logs[prefix + "rating_rmse"]), "watched_auc": float(logs[prefix + "watched_auc"]),
    }


def serve_and_query(model, base, movie_ids, test, k):
    """Serves the export, queries every signature, returns the largest served-vs-Keras gaps."""
    server = Server([ModelVersions("movielens", base)], port=0, poll_seconds=0.5).start()
    client = PredictClient(f"localhost:{server.port}", "movielens")
    try:
        rows = {name: test[name][:8] for name in ("user_id", "movie_id")}
        served = client.predict(rows)
        keras_heads = model(rows)
        gaps = {task: float(np.max(np.abs(served[task] - keras_heads[task].numpy()))) for task in ("rating", "watched")}
        only_rating = client.predict(rows, signature_name="rating")
        gaps["rating_signature"] = float(np.max(np.abs(only_rating["rating"] - keras_heads["rating"].numpy())))
        users = {"user_id": test["user_id"][:4]}
        embedding = client.predict(users, signature_name="query_embedding")["query_embedding"]
        query = model.user_model(users["user_id"]).numpy()
        gaps["query_embedding"] = float(np.max(np.abs(embedding - query)))
        top = client.predict(users, signature_name="top_k")
        scores = query @ model.movie_model(movie_ids).numpy().T  # brute force in NumPy
        best = np.argsort(-scores, axis=1)[:, :k]
        gaps["top_k_scores"] = float(np.max(np.abs(top["scores"] - np.take_along_axis(scores, best, 1))))
        ids_agree = bool(np.all(top["ids"].astype(bytes) == movie_ids[best].astype(bytes)))
        user = users["user_id"][0].decode()
        print(f"served top-{k} for {user}: {[m.decode() for m in top['ids'][0][:5].astype(bytes)]} ...")
        print(f"served rating / watched for ({user}, {rows['movie_id'][0].decode()}): "
              f"{served['rating'][0, 0]:.2f} / {served['watched'][0, 0]:.2f}")
        return gaps, ids_agree
    finally:
        client.close()
        server.stop(grace=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the reduced form CI runs")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--export-dir", default=None, help="default: a temporary folder")
    parser.add_argument("--weighting", default="uncertainty", help='a task weighting; "equal" for none')
    parser.add_argument("--projection", default="pcgrad", help='a gradient projection; "none" for none')
    parser.add_argument("--report", default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    size = dict(num_users=300, num_movies=400, num_interactions=8000) if args.quick else dict(
        num_users=943, num_movies=1682, num_interactions=100_000)
    epochs = args.epochs or (3 if args.quick else 5)
    interactions, user_ids, movie_ids = movielens_like(**size)
    split = int(0.8 * len(interactions["user_id"]))
    train = {name: column[:split] for name, column in interactions.items()}
    test = {name: column[split:] for name, column in interactions.items()}
    train_ds = tf.data.Dataset.from_tensor_slices(train).shuffle(split, seed=0).batch(256).cache()
    test_ds = tf.data.Dataset.from_tensor_slices(test).batch(1024).cache()

    model = MovielensModel(user_ids, movie_ids)
    model.compile(optimizer=keras.optimizers.Adagrad(0.1), task_weighting=args.weighting,
                  gradient_projection=None if args.projection == "none" else args.projection,
                  sample_features=train_ds)
    per_epoch = [figures(model.evaluate(test_ds, return_dict=True, verbose=0))]
    history = model.fit(train_ds, validation_data=test_ds, epochs=epochs, verbose=0)
    for epoch in range(epochs):
        per_epoch.append(figures({key: values[epoch] for key, values in history.history.items()}, "val_"))
    print("epoch  top-10  top-100  rating RMSE  watched AUC   (held-out; epoch 0 = untrained)")
    for epoch, row in enumerate(per_epoch):
        print(f"{epoch:5d}  {row['top_10']:.3f}   {row['top_100']:.3f}    {row['rating_rmse']:.3f}       {row['watched_auc']:.3f}")
    weights = {task: float(history.history[f"{task}_weight"][-1]) for task in model.task_names}
    print("learnt task weights (last epoch):", {t: round(w, 3) for t, w in weights.items()})

    base = os.path.join(args.export_dir or tempfile.mkdtemp(prefix="tfrs_multitask-"), "movielens")
    k = 10
    path = export_recommender(
        base,
        features={"user_id": tf.TensorSpec([None], tf.string), "movie_id": tf.TensorSpec([None], tf.string)},
        ranking=model,
        query=lambda features: model.user_model(features["user_id"]),
        query_features={"user_id": tf.TensorSpec([None], tf.string)},
        candidates=(movie_ids, model.movie_model(movie_ids)),
        k=k,
    )
    print("exported", path)
    gaps, ids_agree = serve_and_query(model, base, movie_ids, test, k)
    print("largest |served - Keras|:", {name: f"{gap:.1e}" for name, gap in gaps.items()}, "top-k ids agree:", ids_agree)
    report = dict(per_epoch=per_epoch, weights=weights, served_gaps=gaps, top_k_ids_agree=ids_agree, export=path)
    if args.report:
        with open(args.report, "w") as handle:
            json.dump(report, handle, indent=1)
    if max(gaps.values()) > 1e-4 or not ids_agree:
        print("served answers differ from the Keras model's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
