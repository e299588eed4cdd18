"""FeatureSpec models end to end on synthetic_recsys: every builder trains, round-trips through
.keras, exports with raw inputs and is served equal to Keras; rank_score fusion; predict_examples."""

import time

import numpy as np
import pytest

from mtl_keras import datasets, export, models
from mtl_keras import features as F
from mtl_keras.backend import keras, tf
from mtl_keras.serving import PredictClient, ServingError
from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

from conftest import save_and_load

TASKS = ["ctr", "cvr"]
ROWS = slice(0, 7)


def recsys_spec(x):
    spec = F.FeatureSpec(
        [
            F.Numeric("price"),
            F.Categorical("user_id", num_buckets=1000, embedding_dim=4),
            F.Categorical("item_id", embedding_dim=4, sharing="both"),
            F.Categorical("category", embedding_dim=3),
            F.Categorical("device", vocabulary=list(datasets.DEVICES), embedding_dim=2, sharing="task"),
            F.Sequence("clicked_items", embedding_of="item_id", max_length=8),
        ],
        task_features={"cvr": ["user_id", "item_id", "price", "device"]},
    )
    spec.adapt(x)
    return spec


@pytest.fixture(scope="module")
def recsys():
    return datasets.synthetic_recsys(600, seed=3, num_users=100, num_items=60, history_length=10)


BUILDERS = {
    "shared_bottom": lambda s: models.shared_bottom(s, TASKS, bottom_units=(8,), tower_units=(4,)),
    "mmoe": lambda s: models.mmoe(s, TASKS, num_experts=2, expert_units=(8,), tower_units=(4,)),
    "ple": lambda s: models.ple(s, TASKS, expert_units=(8,), tower_units=(4,)),
    "snr": lambda s: models.snr(s, TASKS, num_subnetworks=(2, 2), subnetwork_units=(8,), tower_units=(4,)),
    "star": lambda s: models.star(s, "device", TASKS, units=(8,), auxiliary_units=(4,)),
    "esmm": lambda s: models.esmm(s, tower_units=(8,)),
    "cross_stitch": lambda s: models.cross_stitch(s, TASKS, units=(8,), tower_units=(4,)),
}


def losses_of(model):
    if "ctcvr" in model.task_names:
        return {"ctr": "binary_crossentropy", "cvr": None, "ctcvr": "binary_crossentropy"}
    return {t: "binary_crossentropy" for t in model.task_names}


def heads(model, feed):
    return {task: value.numpy() for task, value in model(feed, training=False).items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One local server for every builder's export (each test exports into its own, watched, folder)."""
    root = tmp_path_factory.mktemp("served")
    for name in BUILDERS:
        (root / name).mkdir()
    running = Server([ModelVersions(name, str(root / name)) for name in BUILDERS], port=0, poll_seconds=0.1)
    running.start()
    yield root, running.port
    running.stop(grace=1)


def served(port, name, raw, version=1):
    client = PredictClient(f"localhost:{port}", name)
    try:
        deadline = time.time() + 60
        while _state(client, version) != "AVAILABLE":
            assert time.time() < deadline, f"{name} version {version} never became available"
            time.sleep(0.1)
        return client.predict(raw)
    finally:
        client.close()


def _state(client, version):
    try:
        return client.status().get(version)
    except ServingError:  # NOT_FOUND until the first version is loaded
        return None


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_builder_trains_round_trips_exports_and_serves(builder, recsys, server, tmp_path):
    x, y = recsys
    model = BUILDERS[builder](recsys_spec(x))
    feed = F.prepare_inputs(model, x)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses_of(model))
    history = model.fit(feed, {t: y[t] for t in model.trained_tasks}, batch_size=128, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]

    expected = heads(model, feed)
    again = heads(save_and_load(model, tmp_path), feed)
    for task in model.task_names:
        np.testing.assert_allclose(again[task], expected[task], rtol=1e-6, atol=1e-7)

    root, port = server
    export.export_saved_model(model, str(root / builder), ranking_score={"ctr": 1.0, "cvr": 2.0})
    raw = {name: np.asarray(v)[ROWS] for name, v in x.items()}
    raw["device"] = np.array(["tv", *raw["device"][1:]])  # never seen: the OOV row, no error
    answer = served(port, builder, raw)
    local = heads(model, F.prepare_inputs(model, raw))
    for task in model.task_names:
        np.testing.assert_allclose(answer[task], local[task], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(answer["rank_score"], local["ctr"] + 2.0 * local["cvr"], rtol=1e-5, atol=1e-6)


def example(row):
    def feature(values):
        values = np.atleast_1d(values)
        if values.dtype.kind in "US":
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))
        if values.dtype.kind == "f":
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    return tf.train.Example(features=tf.train.Features(feature={k: feature(v) for k, v in row.items()}))


def test_product_fusion_rank_signature_and_predict_examples_on_raw_features(recsys, tmp_path):
    x, _ = recsys
    model = BUILDERS["mmoe"](recsys_spec(x))
    weights = {"ctr": 0.5, "cvr": 2.0}
    path = export.export_saved_model(model, str(tmp_path / "ranker"), ranking_score=weights,
                                     ranking_fusion="product")
    loaded = tf.saved_model.load(path)
    raw = {name: np.asarray(v)[ROWS] for name, v in x.items()}
    local = heads(model, F.prepare_inputs(model, raw))
    fused = local["ctr"] ** 0.5 * local["cvr"] ** 2.0
    tensors = {k: tf.constant(v) for k, v in F.prepare_inputs(model, raw).items()}
    rank = loaded.signatures["rank"](**tensors)
    assert list(rank) == ["rank_score"]
    np.testing.assert_allclose(rank["rank_score"].numpy(), fused, rtol=1e-5)
    np.testing.assert_allclose(loaded.signatures["serving_default"](**tensors)["rank_score"].numpy(), fused, rtol=1e-5)
    # tf.Example rows: a click history as a variable-length list (no padding sent).
    rows = [{k: (v[i][v[i] >= 0] if k == "clicked_items" else v[i]) for k, v in raw.items()} for i in range(7)]
    serialized = tf.constant([example(row).SerializeToString() for row in rows])
    parsed = loaded.signatures["predict_examples"](examples=serialized)
    for task in TASKS:
        np.testing.assert_allclose(parsed[task].numpy(), local[task], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parsed["rank_score"].numpy(), fused, rtol=1e-5)


def test_ranking_score_arguments_are_checked(recsys, tmp_path):
    model = BUILDERS["shared_bottom"](recsys_spec(recsys[0]))
    with pytest.raises(ValueError, match=r"`ranking_score` names task 'like'"):
        export.export_saved_model(model, str(tmp_path / "a"), ranking_score={"like": 1.0})
    with pytest.raises(ValueError, match=r"`ranking_fusion` must be one of \('linear', 'product'\)"):
        export.export_saved_model(model, str(tmp_path / "b"), ranking_score={"ctr": 1.0}, ranking_fusion="max")


def test_weightings_and_fast_projections_train_a_spec_model(recsys):
    """Projections act on the shared variables only; fast mode finds the shared experts."""
    x, y = recsys
    model = BUILDERS["mmoe"](recsys_spec(x))
    shared = {id(v) for v in model.shared_variables}
    task_tables = [model.get_layer(f"{f}_embedding_{t}").embeddings for f in ("item_id", "device") for t in TASKS]
    assert not any(id(v) in shared for v in task_tables)
    assert id(model.get_layer("item_id_embedding").embeddings) in shared
    model.compile(optimizer="adam", loss=losses_of(model), task_weighting="uncertainty",
                  gradient_projection="pcgrad", projection_mode="fast")
    history = model.fit(F.prepare_inputs(model, x), {t: y[t] for t in TASKS}, batch_size=200, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
