"""FeatureSpec models end to end on synthetic_recsys: every builder trains, round-trips
through .keras, exports with raw inputs and is served equal to Keras; rank_score fusion."""

import numpy as np
import pytest

from mtl_keras import datasets, export, models
from mtl_keras import features as F
from mtl_keras.backend import keras, tf
from mtl_keras.serving import PredictClient
from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

from conftest import save_and_load, to_numpy

TASKS = ["ctr", "cvr"]


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
    x, y = datasets.synthetic_recsys(600, seed=3, num_users=100, num_items=60, history_length=10)
    return x, y


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


def serve(base):
    server = Server([ModelVersions("ranker", base)], port=0, poll_seconds=0.2).start()
    return server, PredictClient(f"localhost:{server.port}", "ranker")


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_builder_trains_round_trips_exports_and_serves(builder, recsys, tmp_path):
    x, y = recsys
    model = BUILDERS[builder](recsys_spec(x))
    feed = F.prepare_inputs(model, x)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses_of(model))
    labels = {t: y[t] for t in model.trained_tasks}
    history = model.fit(feed, labels, batch_size=128, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]

    expected = to_numpy(model.predict(feed, verbose=0))
    reloaded = save_and_load(model, tmp_path)
    again = to_numpy(reloaded.predict(F.prepare_inputs(reloaded, x), verbose=0))
    for task in model.task_names:
        np.testing.assert_allclose(again[task], expected[task], rtol=1e-6, atol=1e-7)

    base = str(tmp_path / "ranker")
    export.export_saved_model(model, base, ranking_score={"ctr": 1.0, "cvr": 2.0})
    rows = slice(0, 7)
    raw = {name: np.asarray(v)[rows] for name, v in x.items()}
    server, client = serve(base)
    try:
        served = client.predict(raw)
    finally:
        client.close()
        server.stop(grace=1)
    for task in model.task_names:
        np.testing.assert_allclose(served[task], expected[task][rows], rtol=1e-5, atol=1e-6)
    fused = expected["ctr"][rows] + 2.0 * expected["cvr"][rows]
    np.testing.assert_allclose(served["rank_score"], fused, rtol=1e-5, atol=1e-6)
