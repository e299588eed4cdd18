"""TensorFlow Recommenders interop (mtl_keras.tfrs), under tf_keras: TFRS 0.7.7 imports only
there, so tests/conftest.py leaves this file out of the Keras 3 run (which tests the module's
ImportError in test_tfrs_import.py instead)."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from mtl_keras.backend import keras, tf

import tensorflow_recommenders as tfrs

from mtl_keras import MultiTaskModel
from mtl_keras.layers import ExpertGate, SharedRepresentation
from mtl_keras.tfrs import MultiTaskMixin, export_recommender, task_variables
from mtl_keras.tfrs.sharing import batch_spec

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Adapter(MultiTaskMixin, tfrs.Model):
    """An existing TFRS ranking model over a functional network: rating and watched."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.rating_task = tfrs.tasks.Ranking(
            loss=keras.losses.MeanSquaredError(), metrics=[keras.metrics.RootMeanSquaredError("rating_rmse")]
        )
        self.watched_task = tfrs.tasks.Ranking(loss=keras.losses.BinaryCrossentropy())

    def call(self, features, training=False):
        return self.net({k: features[k] for k in ("user_id", "movie_id")}, training=training)

    def compute_loss(self, features, training=False):
        out = self(features, training=training)
        return {
            "rating": self.rating_task(labels=features["rating"], predictions=out["rating"]),
            "watched": self.watched_task(labels=features["watched"], predictions=out["watched"]),
        }


def network(seed=0):
    keras.utils.set_random_seed(seed)
    user = keras.Input((), dtype="int64", name="user_id")
    movie = keras.Input((), dtype="int64", name="movie_id")
    u = keras.layers.Embedding(20, 8, name="user_emb")(user)
    m = keras.layers.Embedding(30, 8, name="movie_emb")(movie)
    h = keras.layers.Dense(16, activation="relu", name="shared")(keras.layers.Concatenate()([u, m]))
    rating = keras.layers.Dense(1, name="rating")(keras.layers.Dense(8, activation="relu", name="rating_hidden")(h))
    watched = keras.layers.Dense(1, activation="sigmoid", name="watched")(h)
    return [user, movie], {"rating": rating, "watched": watched}


def ranking_batch(size=32, seed=1):
    rng = np.random.default_rng(seed)
    return dict(
        user_id=rng.integers(0, 20, size).astype("int64"),
        movie_id=rng.integers(0, 30, size).astype("int64"),
        rating=rng.integers(1, 6, (size, 1)).astype("float32"),
        watched=rng.integers(0, 2, (size, 1)).astype("float32"),
    )


@pytest.mark.parametrize("weighting, projection", [("uncertainty", "pcgrad"), ("gradnorm", "mgda")])
def test_adapter_equals_multitaskmodel(weighting, projection):
    """Same network, same batch: the same per-task weights, logs and combined gradient."""
    inputs, outputs = network()
    reference = MultiTaskModel(inputs, outputs)
    adapter = Adapter(keras.Model(*network()))
    adapter.net.set_weights(reference.get_weights())
    batch = ranking_batch()
    x = {k: batch[k] for k in ("user_id", "movie_id")}
    y = {k: batch[k] for k in ("rating", "watched")}
    settings = dict(task_weighting=weighting, gradient_projection=projection)
    reference.compile(optimizer=keras.optimizers.SGD(0.1), loss={"rating": "mse", "watched": "binary_crossentropy"}, **settings)
    adapter.compile(optimizer=keras.optimizers.SGD(0.1), sample_features=batch, **settings)
    assert adapter.task_names == ("rating", "watched")
    assert {v.name for v in adapter.shared_variables} == {v.name for v in reference.shared_variables}
    gaps = []
    for _ in range(2):
        before = reference.get_weights()
        logs_ref = reference.train_on_batch(x, y, return_dict=True)
        logs = adapter.train_on_batch(batch, return_dict=True)
        for key, value in logs_ref.items():
            np.testing.assert_allclose(logs[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
        steps_ref = [(b - a) / 0.1 for b, a in zip(before, reference.get_weights())]
        steps = [(b - a) / 0.1 for b, a in zip(before, adapter.net.get_weights())]
        assert max(float(np.max(np.abs(s))) for s in steps_ref) > 1e-3  # a real step
        gaps.append(max(float(np.max(np.abs(s - r))) for s, r in zip(steps, steps_ref)))
        adapter.net.set_weights(reference.get_weights())  # each step from the same point
    ref_state = reference.training_state.weighting.state_variables
    for name, variable in adapter.training_state.weighting.state_variables.items():
        np.testing.assert_allclose(np.asarray(variable), np.asarray(ref_state[name]), atol=1e-5, err_msg=name)
    assert "rating_rmse" in logs and {"rating_weight", "watched_weight", "grad_cosine/rating__watched"} <= set(logs)
    assert max(gaps) < 1e-5, gaps
    print(f"{weighting}+{projection}: max |combined gradient difference| per step {gaps}")


def test_cross_below_expert_gate_in_a_multitaskmodel(tmp_path):
    """tfrs.layers.dcn.Cross as the shared bottom of an MMoE: shared, trained with a fast projection, exported."""
    x = keras.Input((6,), name="features")
    crossed = tfrs.layers.dcn.Cross(projection_dim=4, name="cross")(x)
    experts = ExpertGate(num_experts=3, expert_units=8, num_tasks=2, name="mmoe")(crossed)
    heads = {t: keras.layers.Dense(1, activation="sigmoid", name=t)(h) for t, h in zip(("ctr", "cvr"), experts)}
    model = MultiTaskModel(x, heads)
    cross_variables = {v.name for v in model.get_layer("cross").trainable_variables}
    assert cross_variables <= {v.name for v in model.shared_variables}
    model.compile(
        optimizer=keras.optimizers.Adam(0.01), loss={t: "binary_crossentropy" for t in heads},
        task_weighting="uncertainty", gradient_projection="pcgrad", projection_mode="fast",
    )
    rng = np.random.default_rng(0)
    data = rng.normal(size=(256, 6)).astype("float32")
    labels = {"ctr": (data[:, :1] * data[:, 1:2] > 0).astype("float32"), "cvr": (data[:, 2:3] > 0).astype("float32")}
    before = [np.asarray(v) for v in model.get_layer("cross").trainable_variables]
    history = model.fit(data, labels, batch_size=64, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "grad_cosine/ctr__cvr" in history.history
    after = model.get_layer("cross").trainable_variables
    assert all(np.any(np.asarray(a) != b) for a, b in zip(after, before))
    from mtl_keras import export

    path = export.export_saved_model(model, str(tmp_path / "cross"))
    served = tf.saved_model.load(path).signatures["serving_default"](features=tf.constant(data[:5]))
    np.testing.assert_allclose(served["ctr"], model.predict(data[:5], verbose=0)["ctr"], atol=1e-5)



def test_cross_on_recommender_features_below_cgc(tmp_path):
    """Raw recommender features (FeatureSpec) -> Cross -> CGCLayer -> towers: the Cross is shared,
    the export takes the raw features and equals the Keras model."""
    from mtl_keras import datasets, export, features as F
    from mtl_keras.layers import CGCLayer

    x, y = datasets.synthetic_recsys(512, seed=0)
    spec = F.FeatureSpec([
        F.Numeric("price"),
        F.Categorical("user_id", embedding_dim=8),
        F.Categorical("item_id", embedding_dim=8),
        F.Categorical("device", vocabulary=["ios", "android", "web"], embedding_dim=4, sharing="task"),
    ])
    spec.adapt(x)
    tasks = ["ctr", "cvr"]
    views = spec.views(tasks)
    crossed = tfrs.layers.dcn.Cross(name="cross")(views.shared)
    levels = CGCLayer(num_tasks=2, num_task_experts=1, num_shared_experts=2, expert_units=8, name="cgc")(crossed)
    heads = {
        task: keras.layers.Dense(1, activation="sigmoid", name=task)(views.tower_input(task, level))
        for task, level in zip(tasks, levels)
    }
    model = MultiTaskModel(views.inputs, heads)
    shared = {v.name for v in model.shared_variables}
    assert {v.name for v in model.get_layer("cross").trainable_variables} <= shared
    assert not any("device" in name for name in shared)  # the per-task device tables stay the tasks' own
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={t: "binary_crossentropy" for t in tasks},
                  task_weighting="uncertainty", gradient_projection="pcgrad")
    inputs = F.prepare_inputs(model, x)
    history = model.fit(inputs, {t: y[t] for t in tasks}, batch_size=128, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    path = export.export_saved_model(model, str(tmp_path / "ranker"))
    rows = {name: np.asarray(x[name][:5]) for name in views.inputs}
    served = tf.saved_model.load(path).signatures["serving_default"](**{k: tf.constant(v) for k, v in rows.items()})
    keras_out = model.predict(F.prepare_inputs(model, rows), verbose=0)
    for task in tasks:
        np.testing.assert_allclose(served[task], keras_out[task], atol=1e-5)



class TwoTower(MultiTaskMixin, tfrs.Model):
    """Retrieval and rating on shared user and movie towers; the rating head is the rating task's own."""

    def __init__(self, compute_loss_returns=None, marked=False):
        super().__init__()
        # Marks the tower outputs for projection_mode="fast" (identity layers, no variables).
        self.marks = [SharedRepresentation(name=f"{side}_representation") for side in ("user", "movie")] if marked else None
        self.user_model = keras.layers.Embedding(20, 8, name="user_tower")
        self.movie_model = keras.layers.Embedding(30, 8, name="movie_tower")
        self.rating_head = keras.layers.Dense(1, name="rating_head")
        self.retrieval_task = tfrs.tasks.Retrieval()
        self.rating_task = tfrs.tasks.Ranking(loss=keras.losses.MeanSquaredError())
        self.returns = compute_loss_returns

    def compute_loss(self, features, training=False):
        q, c = self.user_model(features["user_id"]), self.movie_model(features["movie_id"])
        if self.marks:
            q, c = self.marks[0](q), self.marks[1](c)
        losses = {
            "retrieval": self.retrieval_task(q, c),
            "rating": self.rating_task(labels=features["rating"], predictions=self.rating_head(q * c)),
        }
        return self.returns(losses) if self.returns else losses


def test_tasks_and_shared_variables_from_a_trace_of_compute_loss(tmp_path):
    model = TwoTower()
    batch = ranking_batch()
    tasks, reached = task_variables(model, batch_spec(batch))
    assert tasks == ("retrieval", "rating")
    by_name = {v.name: by for v, by in zip(model.trainable_variables, reached)}
    assert by_name == {
        "user_tower/embeddings:0": {"retrieval", "rating"},
        "movie_tower/embeddings:0": {"retrieval", "rating"},
        "rating_head/kernel:0": {"rating"},
        "rating_head/bias:0": {"rating"},
    }
    assert model.optimizer is None  # traced, never run: nothing was trained or compiled
    model.compile(optimizer={"shared": "adam", "rating": keras.optimizers.SGD(0.1), "default": "adam"},
                  task_weighting="uncertainty", gradient_projection="pcgrad", task_names=["rating", "retrieval"])
    history = model.fit(tf.data.Dataset.from_tensor_slices(batch).batch(16), epochs=2, verbose=0)
    assert model.task_names == ("rating", "retrieval")
    assert {"loss", "rating_loss", "retrieval_weight", "grad_cosine/rating__retrieval"} <= set(history.history)
    kinds = model.training_state.weighting._factor.numpy().tolist()
    assert kinds == [0.5, 1.0]  # rating regression, retrieval (softmax cross-entropy) classification
    # The training state is tracked: a tf.train.Checkpoint of the model holds it.
    names = [name for name, _ in tf.train.list_variables(tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt")))]
    assert any(name.startswith("model/_mtl_state/weighting/") for name in names), names
    assert any(name.startswith("model/_mtl_state/step") for name in names), names


def test_fast_projection_on_marked_towers():
    """projection_mode="fast": the task Gram matrix from gradients with respect to the marked tower outputs."""
    model = TwoTower(marked=True)
    batch = ranking_batch(64)
    model.compile(optimizer=keras.optimizers.Adam(0.05), task_weighting="uncertainty",
                  gradient_projection="mgda", projection_mode="fast", sample_features=batch)
    assert type(model._mtl_trainer.mode).__name__ == "Fast"
    history = model.fit(batch, batch_size=16, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert np.isfinite(history.history["grad_cosine/retrieval__rating"]).all()


def test_sub_batch_projections_need_per_example_losses():
    # compute_loss returns each task's batch loss: SDMGrad's halves cannot be formed from it.
    model = TwoTower()
    with pytest.raises(ValueError, match="SDMGrad draws sub-batches .*per-example losses"):
        model.compile(optimizer="adam", gradient_projection="sdmgrad", sample_features=ranking_batch())


@pytest.mark.parametrize("returns, message", [
    (lambda losses: losses["rating"] + losses["retrieval"], "must return a non-empty dict"),
    (lambda losses: {"rating": tf.fill([3], losses["rating"])}, "must be a scalar"),
])
def test_compute_loss_must_return_scalars_by_task(returns, message):
    model = TwoTower(returns)
    model.compile(optimizer="adam")
    with pytest.raises(ValueError, match=message):
        model.fit(ranking_batch(), batch_size=16, epochs=1, verbose=0)


def run_example(argv):
    """examples/tfrs_multitask.py's main(argv), in this process (TensorFlow is imported already)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tfrs_multitask", ROOT / "examples" / "tfrs_multitask.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.main(argv)


def test_example_quick_trains_exports_and_serves_equal_to_keras(tmp_path, capsys):
    """Retrieval + rating + watched with uncertainty weighting and PCGrad: held-out top-100
    accuracy rises and rating RMSE falls every epoch; the served heads, query embedding and
    top-k equal the Keras model's."""
    report = tmp_path / "report.json"
    assert run_example(["--quick", "--report", str(report), "--export-dir", str(tmp_path)]) == 0
    figures = json.loads(report.read_text())
    top_100 = [row["top_100"] for row in figures["per_epoch"]]
    rmse = [row["rating_rmse"] for row in figures["per_epoch"]]
    print(capsys.readouterr().out)
    assert all(later > earlier for earlier, later in zip(top_100, top_100[1:])), top_100
    assert all(later < earlier for earlier, later in zip(rmse, rmse[1:])), rmse
    assert top_100[-1] > 0.3 and rmse[-1] < 0.7  # top-100 by chance: 0.25 (100 of 400 movies)
    assert max(figures["served_gaps"].values()) < 1e-5 and figures["top_k_ids_agree"]
    assert set(figures["weights"]) == {"retrieval", "rating", "watched"}
    saved = tf.saved_model.load(figures["export"])
    assert set(saved.signatures) == {"serving_default", "rating", "watched", "query_embedding", "top_k"}


def test_export_recommender_checks_its_arguments(tmp_path):
    spec = {"user_id": tf.TensorSpec([None], tf.int64)}
    with pytest.raises(ValueError, match="nothing to export"):
        export_recommender(str(tmp_path), spec)
    with pytest.raises(ValueError, match="`candidates` needs `query`"):
        export_recommender(str(tmp_path), spec, ranking=lambda f: {"x": f["user_id"]}, candidates=([1], [[1.0]]))
    with pytest.raises(ValueError, match="must be a tf.TensorSpec"):
        export_recommender(str(tmp_path), {"user_id": "int64"}, ranking=lambda f: {})
    with pytest.raises(ValueError, match="must return a dict"):
        export_recommender(str(tmp_path), spec, ranking=lambda f: f["user_id"])
    assert not [name for name in os.listdir(tmp_path) if not name.startswith(".")]
