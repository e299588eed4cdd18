import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras.backend import keras, tf
from mtl_keras.layers import BranchingLayers

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")


def relu(z):
    return np.maximum(z, 0.0)


def np_run(layer, mixing):
    """Level 0 reads x; node i of level l reads sum_j d_ij h_{l-1,j}; task k reads sum_j d_kj h_{L-1,j}."""
    nodes = [[(np.asarray(k), np.asarray(b)) for k, b in level] for level in layer.nodes]
    level = [relu(X @ k + b) for k, b in nodes[0]]
    for l, d in enumerate(mixing):
        mixed = [sum(d[i, j] * level[j] for j in range(len(level))) for i in range(d.shape[0])]
        level = mixed if l == len(mixing) - 1 else [relu(m @ k + b) for m, (k, b) in zip(mixed, nodes[l + 1])]
    return level


def np_gumbel(logits, tau, seed):
    u = np.asarray(tf.random.stateless_uniform(logits.shape, seed=tf.constant(seed, tf.int64),
                                               minval=1e-6, maxval=1.0 - 1e-6), np.float64)
    z = (logits - np.log(-np.log(u))) / tau
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def make(**kwargs):
    layer = BranchingLayers(3, (4, 3, 2), branches=(2, 3, 2), seed=11, **kwargs)
    layer(X)
    rng = np.random.default_rng(3)
    for logits in layer.parent_logits:
        logits.assign(rng.normal(size=logits.shape).astype("float32"))
    return layer


def test_search_mixes_parents_by_the_steps_gumbel_softmax_sample():
    layer = make(steps_per_epoch=1, temperature=2.0, temperature_decay=0.5)
    for step in range(2):
        tau = 2.0 * 0.5 ** step
        mixing = [np_gumbel(np.asarray(l, np.float64), tau, [step, 11 + 7919 * (c + 1)])
                  for c, l in enumerate(layer.parent_logits)]
        got = to_numpy(layer(X, training=True))
        want = np_run(layer, mixing)
        for k in range(3):
            np.testing.assert_allclose(got[k], want[k], atol=1e-4)
    assert all(0.02 < m.max(axis=-1).min() < 0.98 for m in mixing)  # relaxed, not one-hot


def test_inference_reads_the_most_likely_parents_and_the_frozen_tree_only_its_paths():
    layer = make()
    hard = [np.eye(l.shape[-1])[np.argmax(np.asarray(l), axis=-1)] for l in layer.parent_logits]
    want = np_run(layer, hard)
    eager = to_numpy(layer(X, training=False))
    graph = to_numpy(tf.function(lambda x: layer(x, training=False))(X))
    for k in range(3):
        np.testing.assert_allclose(eager[k], want[k], atol=1e-5)
        np.testing.assert_allclose(graph[k], want[k], atol=1e-5)
    layer.parents = np.array([0, 0, 1, 1, 1, 0, 0, 1])  # a tree: see the path count below
    # level 1: nodes 0, 1, 2 read level-0 nodes 0, 0, 1; level 2: nodes 0, 1 read level-1 nodes 1, 1;
    # tasks read level-2 nodes 0, 0, 1 -> used: level 2 {0, 1}, level 1 {1}, level 0 {0}: four nodes
    frozen = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec([None, 6]))
    assert sum(op.type == "MatMul" for op in frozen.graph.get_operations()) == 4
    tree = [np.eye(2)[[0, 0, 1]], np.eye(3)[[1, 1]], np.eye(2)[[0, 0, 1]]]
    got = to_numpy(layer(X, training=True))
    for k in range(3):
        np.testing.assert_allclose(got[k], np_run(layer, tree)[k], atol=1e-5)
    layer.parents = None
    assert layer.freeze() == np.concatenate([np.argmax(np.asarray(l), -1) for l in layer.parent_logits]).tolist()


@pytest.mark.parametrize("frozen", [False, True])
def test_keras_file_round_trip(frozen, tmp_path):
    x = keras.Input((6,), name="x")
    outs = BranchingLayers(2, (4, 3), name="tree")(x)
    model = keras.Model(x, {"a": outs[0], "b": outs[1]})
    layer = model.get_layer("tree")
    for logits in layer.parent_logits:
        logits.assign(np.random.default_rng(4).normal(size=logits.shape).astype("float32"))
    if frozen:
        layer.freeze()
    before = to_numpy(model(X))
    loaded = save_and_load(model, tmp_path)
    after = to_numpy(loaded(X))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)
    assert loaded.get_layer("tree").get_config()["parents"] == layer.get_config()["parents"]


def test_bad_input():
    with pytest.raises(ValueError, match="num_tasks"):
        BranchingLayers(1, (4,))
    with pytest.raises(ValueError, match="temperature"):
        BranchingLayers(2, (4,), temperature=-1.0)
    with pytest.raises(ValueError, match="branches"):
        BranchingLayers(2, (4, 3, 2), branches=(1, 2))
    with pytest.raises(ValueError, match="parents"):
        BranchingLayers(2, (4, 3), parents=[0, 5, 0, 0])
    with pytest.raises(ValueError, match="still searching its `parents`"):
        make().check_frozen()
