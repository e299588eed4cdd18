"""The survey's sharing architectures as builders: NDDR, MTAN, AdaShare, Learning to Branch, MTL-NAS.

Each trains under a weighting and a fast gradient projection, reads a FeatureSpec, and, where a
structure is searched, exports only once frozen, equal to Keras and pruned."""

import os

import numpy as np
import pytest

from conftest import save_and_load
from mtl_keras import datasets, export, models
from mtl_keras import features as F
from mtl_keras.backend import keras, tf
from mtl_keras.training.sharing import representation_layers

TASKS = ["ctr", "cvr"]
X = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
Y = {t: (np.random.default_rng(i).random((32, 1)) < 0.4).astype("float32") for i, t in enumerate(TASKS)}

BUILDERS = {
    "nddr": lambda i: models.nddr(i, TASKS, units=(4,), tower_units=(3,)),
    "mtan": lambda i: models.mtan(i, TASKS, units=(4, 3), tower_units=(3,)),
    "adashare": lambda i: models.adashare(i, TASKS, units=4, num_blocks=2, tower_units=(3,), steps_per_epoch=1),
    "learning_to_branch": lambda i: models.learning_to_branch(i, TASKS, units=(4, 3, 3), tower_units=(3,)),
    "mtl_nas": lambda i: models.mtl_nas(i, TASKS, units=(4, 3), tower_units=(3,)),
}
SEARCHED = {"learning_to_branch": "parents", "mtl_nas": "edges"}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_fast_projections_find_a_shared_representation(name):
    """Fast mode needs a tensor every task reads, upstream of the shared variables it stands for."""
    model = BUILDERS[name](keras.Input((6,), name="features"))
    layers = representation_layers(model)
    shared = {id(v) for v in model.shared_variables}
    first = {"nddr": "ctr_column_0", "mtan": "trunk_0", "adashare": "stem", "learning_to_branch": "root",
             "mtl_nas": "ctr_column_0"}[name]
    assert layers and id(model.get_layer(first).kernel) in shared


def test_searching_adashare_trains_with_a_weighting_and_a_fast_projection():
    model = BUILDERS["adashare"](keras.Input((6,), name="features"))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss={t: "binary_crossentropy" for t in TASKS},
                  task_weighting="uncertainty", gradient_projection="pcgrad", projection_mode="fast",
                  jit_compile=False)
    logits = model.get_layer("adashare").policy_logits
    before = np.asarray(logits).copy()
    history = model.fit(X, Y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert not np.allclose(before, np.asarray(logits))  # the policy is learnt in the same step


def test_feature_spec_inputs_and_exact_projection():
    x, y = datasets.synthetic_recsys(120, seed=3, num_users=30, num_items=20, history_length=4)
    spec = F.FeatureSpec([F.Numeric("price"), F.Categorical("item_id", embedding_dim=3),
                          F.Categorical("user_id", num_buckets=50, embedding_dim=3)],
                         task_features={"cvr": ["item_id", "price"]})
    spec.adapt(x)
    model = models.nddr(spec, TASKS, units=(4,), tower_units=())
    model.compile(optimizer="adam", loss={t: "binary_crossentropy" for t in TASKS}, gradient_projection="mgda",
                  jit_compile=False)
    history = model.fit(F.prepare_inputs(model, x), {t: y[t] for t in TASKS}, batch_size=60, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for name, builder in BUILDERS.items():  # every builder reads the raw features
        heads = builder(spec)(F.prepare_inputs(model, {k: v[:3] for k, v in x.items()}), training=False)
        assert {t: tuple(heads[t].shape) for t in TASKS} == {t: (3, 1) for t in TASKS}, name


def count_matmuls(path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    return sum(node.op == "MatMul" for f in proto.meta_graphs[0].graph_def.library.function for node in f.node_def)


def test_adashare_exports_only_frozen_equal_to_keras_and_pruned(tmp_path):
    def build(policy=None):
        return models.adashare(keras.Input((6,), name="features"), TASKS, units=4, num_blocks=4,
                               tower_units=(), policy=policy)

    searching = build()
    with pytest.raises(ValueError, match="still searching its `policy`"):
        export.export_saved_model(searching, str(tmp_path / "searching"))
    layer = searching.get_layer("adashare")
    logits = np.zeros((2, 4, 2), "float32")
    logits[..., 1] = 1.0
    logits[0, 0, 1] = logits[1, 3, 1] = 0.0  # ctr runs block 0 only, cvr block 3 only
    layer.policy_logits.assign(logits)
    layer.curriculum = False
    assert models.freeze_structure(searching) == {"adashare": [[1, 0, 0, 0], [0, 0, 0, 1]]}
    full = build(policy=[[1] * 4] * 2)
    paths = {}
    for name, model in (("pruned", searching), ("full", full)):
        paths[name] = export.export_saved_model(model, str(tmp_path / name))
        served = tf.saved_model.load(paths[name]).signatures
        want = model.predict(X, verbose=0)
        for task in TASKS:
            got = served[task](features=tf.constant(X))[task].numpy()
            np.testing.assert_allclose(got, want[task], atol=1e-5)
            np.testing.assert_allclose(served["serving_default"](features=tf.constant(X))[task].numpy(),
                                       want[task], atol=1e-5)
    # blocks 1 and 2 (selected by no task) are neither computed nor saved
    assert count_matmuls(paths["pruned"]) < count_matmuls(paths["full"])
    saved = {name: len(tf.saved_model.load(path).serving_variables) for name, path in paths.items()}
    assert saved["full"] - saved["pruned"] == 2 * 4
    reloaded = save_and_load(searching, tmp_path)  # the MultiTaskModel reloads frozen
    assert reloaded.get_layer("adashare").get_config()["policy"] == [[1, 0, 0, 0], [0, 0, 0, 1]]
    np.testing.assert_allclose(reloaded.predict(X, verbose=0)["cvr"], searching.predict(X, verbose=0)["cvr"],
                               atol=1e-6)


@pytest.mark.parametrize("name", sorted(SEARCHED))
def test_searched_structure_exports_once_frozen_equal_to_keras(name, tmp_path):
    model = BUILDERS[name](keras.Input((6,), name="features"))
    with pytest.raises(ValueError, match=f"still searching its `{SEARCHED[name]}`"):
        export.export_saved_model(model, str(tmp_path / "searching"))
    for variable in model.trainable_variables:  # a structure other than the all-zero logits' first choices
        variable.assign(np.random.default_rng(5).normal(size=variable.shape).astype("float32"))
    frozen = models.freeze_structure(model)
    assert list(frozen) and not models.freeze_structure(model)  # frozen once
    served = tf.saved_model.load(export.export_saved_model(model, str(tmp_path / "frozen"))).signatures
    want = model.predict(X, verbose=0)
    for task in TASKS:
        np.testing.assert_allclose(served[task](features=tf.constant(X))[task].numpy(), want[task], atol=1e-5)
        np.testing.assert_allclose(served["serving_default"](features=tf.constant(X))[task].numpy(), want[task],
                                   atol=1e-5)


def test_mtl_nas_fixed_phase_retrains_the_found_edges_only():
    search = BUILDERS["mtl_nas"](keras.Input((6,), name="features"))
    fusion = search.get_layer("fusion_1")
    fusion.edge_logits.assign([[3.0, -3.0], [-3.0, -3.0]])  # ctr keeps cvr's level-0 column, cvr nothing
    edges = models.freeze_structure(search)
    assert edges["fusion_1"] == [[1, 0], [0, 0]]
    fixed = models.mtl_nas(keras.Input((6,), name="features"), TASKS, units=(4, 3), tower_units=(3,),
                           phase="fixed", edges=edges)
    # dropped: level 0's two 4x4 edge kernels and 2 logits; level 1's 4x3 and 3x3 kernels per task
    # but the one kept 4x3, and 4 logits
    assert search.count_params() - fixed.count_params() == (2 * 16 + 2) + (2 * (12 + 9) - 12 + 4)
    assert fixed.predict(X, verbose=0)["ctr"].shape == (32, 1)
