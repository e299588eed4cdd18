import numpy as np
import pytest

from conftest import save_and_load
from mtl_keras import models
from mtl_keras.backend import keras

TASKS = ["click", "cart", "buy"]


def dense_numpy(model, name, x, relu=True):
    kernel, bias = model.get_layer(name).get_weights()
    out = x @ kernel + bias
    return np.maximum(out, 0) if relu else out


def test_outputs_follow_the_task_order_as_the_formula():
    """EasyRec's DBMTL from the model's weights: tower_t, relation_t = MLP([tower_t; relation_<t]), head_t."""
    model = models.dbmtl(keras.Input((5,), name="x"), TASKS, bottom_units=(6,), tower_units=(4,),
                         relation_units=(3,), task_types={"click": "binary", "cart": "binary", "buy": "regression"})
    x = np.random.default_rng(0).normal(size=(7, 5)).astype("float32")
    out = model.predict(x, verbose=0)
    bottom = dense_numpy(model, "bottom_0", x)
    related = []
    for task in TASKS:
        tower = dense_numpy(model, f"{task}_tower_0", bottom)
        relation = dense_numpy(model, f"{task}_relation_0", np.concatenate([tower] + related, axis=1))
        related.append(relation)
        logit = dense_numpy(model, task, relation, relu=False)
        want = logit if task == "buy" else 1 / (1 + np.exp(-logit))
        np.testing.assert_allclose(out[task], want, atol=1e-5)


def test_relations_choose_what_each_task_reads():
    model = models.dbmtl(keras.Input((5,), name="x"), TASKS, tower_units=(4,), relation_units=(3,),
                         relations={"buy": ["click"]})
    widths = {task: model.get_layer(f"{task}_relation_0").get_weights()[0].shape[0] for task in TASKS}
    assert widths == {"click": 4, "cart": 4, "buy": 4 + 3}
    for relations, match in (({"click": ["buy"]}, r"`relations\['click'\]` must name tasks before"),
                             ({"like": []}, "`relations` must be a dict"),
                             ({"buy": ["buy"]}, r"`relations\['buy'\]`")):
        with pytest.raises(ValueError, match=match):
            models.dbmtl(keras.Input((5,)), TASKS, relations=relations)


def test_mmoe_bottom_trains_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(384, 5)).astype("float32")
    click = x[:, 0] > 0
    y = {"click": click, "cart": click & (x[:, 1] > 0), "buy": click & (x[:, 1] > 0) & (x[:, 2] > 0)}
    y = {t: v.astype("float32")[:, None] for t, v in y.items()}
    model = models.dbmtl(keras.Input((5,), name="x"), TASKS, num_experts=3, expert_units=(8,), tower_units=(8,),
                         relation_units=(4,))
    assert model.get_layer("mmoe").num_tasks == 3
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss={t: "binary_crossentropy" for t in TASKS},
                  jit_compile=False)
    history = model.fit(x, y, epochs=3, batch_size=128, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]
    before = model.predict(x[:6], verbose=0)
    np.testing.assert_allclose(save_and_load(model, tmp_path).predict(x[:6], verbose=0)["buy"], before["buy"],
                               atol=1e-5)


def test_builds_from_a_feature_spec_with_task_features():
    from mtl_keras import datasets
    from mtl_keras import features as F

    x, _ = datasets.synthetic_recsys(64, seed=3, num_users=20, num_items=15, history_length=4)
    spec = F.FeatureSpec([F.Numeric("price"), F.Categorical("user_id", num_buckets=50, embedding_dim=4),
                          F.Categorical("item_id", embedding_dim=4, sharing="both")],
                         task_features={"cvr": ["item_id", "price"]})
    spec.adapt(x)
    model = models.dbmtl(spec, ["ctr", "cvr"], bottom_units=(4,), tower_units=(4,), relation_units=(2,))
    feed = {n: x[n][:5] for n in ("price", "user_id", "item_id")}
    assert {t: tuple(p.shape) for t, p in model(feed).items()} == {"ctr": (5, 1), "cvr": (5, 1)}
    # cvr's tower reads its shared tower input next to its own features (price 1 + item's task table 4).
    assert model.get_layer("cvr_tower_0").get_weights()[0].shape[0] == 4 + 1 + 4 + 4
