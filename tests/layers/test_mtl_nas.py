import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras import models
from mtl_keras.backend import keras, tf
from mtl_keras.layers import SearchedFusion

EPS = 1e-3
T = 3
RNG = np.random.default_rng(0)
H = [RNG.normal(size=(6, 4)).astype("float32") for _ in range(T)] + [
    RNG.normal(size=(6, 3)).astype("float32") for _ in range(T)]  # levels 0 (width 4) and 1 (width 3)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_fusion(layer, alpha, training):
    """y_t = relu(BN_t(h_t1 W_t + sum_e alpha_te h_e W_te)), sources: the other tasks at levels 0 and 1."""
    outputs = []
    for t in range(T):
        y = H[T + t] @ np.asarray(layer.own_kernels[t])
        for e, (i, s) in enumerate(layer.sources(t)):
            if alpha[t, e]:
                y = y + alpha[t, e] * H[i * T + s] @ np.asarray(layer.edge_kernels[t][e])
        norm = layer.norms[t]
        mean, var = (y.mean(0), y.var(0)) if training else (np.asarray(norm.moving_mean), np.asarray(norm.moving_variance))
        outputs.append(np.maximum(np.asarray(norm.gamma) * (y - mean) / np.sqrt(var + EPS) + np.asarray(norm.beta), 0))
    return outputs


def make(**kwargs):
    layer = SearchedFusion(T, level=1, **kwargs)
    layer(H)
    rng = np.random.default_rng(1)
    for weight in layer.weights:
        values = rng.normal(size=weight.shape).astype("float32")
        weight.assign(np.abs(values) + 0.5 if "variance" in weight.name else values)
    return layer


def test_candidates_and_nddr_initialisation():
    layer = SearchedFusion(T, level=1)
    layer(H)
    assert layer.sources(1) == [(0, 0), (0, 2), (1, 0), (1, 2)]
    np.testing.assert_allclose(np.asarray(layer.own_kernels[0]), 0.9 * np.eye(3))
    np.testing.assert_allclose(np.asarray(layer.edge_kernels[0][0]), 0.1 * np.eye(4, 3))


@pytest.mark.parametrize("training", [False, True])
def test_search_fuses_every_edge_weighted_by_sigmoid_beta(training):
    layer = make()
    alpha = sigmoid(np.asarray(layer.edge_logits, np.float64))
    got = to_numpy(layer(H, training=training))
    want = np_fusion(layer, alpha, training)
    for t in range(T):
        np.testing.assert_allclose(got[t], want[t], atol=1e-4)


def test_minimum_entropy_regulariser_drives_the_edge_weights_to_zero_or_one():
    layer = make(entropy_weight=0.3)
    layer(H, training=True)
    alpha = sigmoid(np.asarray(layer.edge_logits, np.float64))
    entropy = -(alpha * np.log(alpha) + (1 - alpha) * np.log(1 - alpha)).sum()
    assert len(layer.losses) == 1 and float(layer.losses[0]) == pytest.approx(0.3 * entropy, rel=1e-5)
    layer.edge_logits.assign(np.full(layer.edge_logits.shape, 0.2, "float32"))
    layer.edge_logits[0, 0].assign(-0.2)
    for _ in range(20):  # gradient descent on the regulariser alone
        with tf.GradientTape() as tape:
            loss = layer.entropy()
        layer.edge_logits.assign_sub(1.0 * tape.gradient(loss, layer.edge_logits))
    alpha = np.asarray(layer.edge_weights())
    assert alpha[0, 0] < 0.35 and (np.delete(alpha.ravel(), 0) > 0.65).all()


def test_frozen_edges_alone_are_computed_each_with_weight_one():
    layer = make()
    logits = np.asarray(layer.edge_logits)
    kept = layer.freeze()
    np.testing.assert_array_equal(kept, (sigmoid(logits) > 0.5).astype(int))
    assert 0 < np.sum(kept) < np.size(kept)
    graph = tf.function(lambda h: layer(h, training=False)).get_concrete_function([tf.TensorSpec([None, 4])] * T
                                                                                  + [tf.TensorSpec([None, 3])] * T)
    assert sum(op.type == "MatMul" for op in graph.graph.get_operations()) == T + np.sum(kept)
    got = to_numpy(layer(H, training=False))
    want = np_fusion(layer, np.asarray(kept, float), training=False)
    for t in range(T):
        np.testing.assert_allclose(got[t], want[t], atol=1e-4)
    assert not layer.losses


def test_fixed_phase_has_kernels_for_the_kept_edges_only():
    edges = [[1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    layer = SearchedFusion(T, level=1, phase="fixed", edges=edges)
    layer(H)
    assert sum(k is not None for kernels in layer.edge_kernels for k in kernels) == 2
    assert not any("edge_logits" in w.name for w in layer.weights)


@pytest.mark.parametrize("state", ["search", "frozen", "fixed"])
def test_keras_file_round_trip(state, tmp_path):
    inputs = [keras.Input((4,), name=f"l0_{t}") for t in range(T)] + [keras.Input((3,), name=f"l1_{t}") for t in range(T)]
    edges = [[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]] if state == "fixed" else None
    outs = SearchedFusion(T, level=1, phase="fixed" if state == "fixed" else "search", edges=edges,
                          name="fusion")(inputs)
    model = keras.Model(inputs, {f"t{t}": o for t, o in enumerate(outs)})
    layer = model.get_layer("fusion")
    for weight in layer.trainable_weights:
        weight.assign(np.random.default_rng(2).normal(size=weight.shape).astype("float32"))
    if state == "frozen":
        layer.freeze()
    before = to_numpy(model(H))
    loaded = save_and_load(model, tmp_path)
    after = to_numpy(loaded(H))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-5)
    assert loaded.get_layer("fusion").get_config()["edges"] == layer.get_config()["edges"]


def test_bad_input():
    with pytest.raises(ValueError, match="num_tasks"):
        SearchedFusion(1, level=0)
    with pytest.raises(ValueError, match="phase"):
        SearchedFusion(2, level=0, phase="retrain")
    with pytest.raises(ValueError, match="edges"):
        SearchedFusion(2, level=0, phase="fixed")
    with pytest.raises(ValueError, match="edges"):
        SearchedFusion(2, level=1, edges=[[1, 0]])
    with pytest.raises(ValueError, match="entropy_weight"):
        SearchedFusion(2, level=0, entropy_weight=-1.0)
    with pytest.raises(ValueError, match="column outputs"):
        SearchedFusion(T, level=1)(H[:4])
    with pytest.raises(ValueError, match="one width"):
        SearchedFusion(2, level=0)([tf.ones([2, 3]), tf.ones([2, 4])])
    with pytest.raises(ValueError, match="edges"):
        models.mtl_nas(keras.Input((6,)), ["a", "b"], phase="fixed", edges={"fusion_0": [[0], [0]]})
    with pytest.raises(ValueError, match="still searching its `edges`"):
        make().check_frozen()
