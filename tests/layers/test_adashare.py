import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras.backend import keras, tf
from mtl_keras.layers import AdaShareBlocks

X = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")


def relu(z):
    return np.maximum(z, 0.0)


def np_blocks(layer):
    return [[np.asarray(w) for w in block] for block in layer.blocks]


def np_run(layer, select):
    """h_l = u_kl F_l(h) + (1 - u_kl) h, F_l(h) = relu(h + relu(h W1 + b1) W2 + b2)."""
    outputs = []
    for k in range(layer.num_tasks):
        h = X
        for l, (w1, b1, w2, b2) in enumerate(np_blocks(layer)):
            h = select[k][l] * relu(h + relu(h @ w1 + b1) @ w2 + b2) + (1 - select[k][l]) * h
        outputs.append(h)
    return outputs


def np_gumbel_select(logits, tau, step, seed):
    u = np.asarray(tf.random.stateless_uniform(logits.shape, seed=tf.constant([step, seed], tf.int64),
                                               minval=1e-6, maxval=1.0 - 1e-6), np.float64)
    z = (logits - np.log(-np.log(u))) / tau
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True))[..., 0]


def make(**kwargs):
    layer = AdaShareBlocks(3, 4, steps_per_epoch=1, seed=5, **kwargs)
    layer(X)
    rng = np.random.default_rng(1)
    layer.policy_logits.assign(rng.normal(size=(3, 4, 2)).astype("float32"))
    return layer


def test_search_samples_gumbel_softmax_with_the_curriculum_and_decaying_temperature():
    """Epoch e (one step per epoch here): tau = 5 * 0.9 ** e, the last e + 1 blocks learnt,
    the others selected; the select weight is the Gumbel-softmax sample of the step's noise."""
    layer = make(temperature_decay=0.9)
    logits = np.asarray(layer.policy_logits, np.float64)
    for step in range(3):
        sample = np_gumbel_select(logits, 5.0 * 0.9 ** step, step, 5)
        learnt = np.arange(4) >= 4 - (step + 1)
        select = np.where(learnt[None, :], sample, 1.0)
        got = to_numpy(layer(X, training=True))
        for k in range(3):
            np.testing.assert_allclose(got[k], np_run(layer, select)[k], atol=1e-4)
    assert 0.05 < sample.min() and sample.max() < 0.95  # a relaxed sample, not a hard one


def test_warmup_selects_every_block_and_no_curriculum_learns_all_at_once():
    layer = make(warmup_epochs=2, curriculum=False)
    np.testing.assert_array_equal(np.asarray(layer.learnt_blocks(tf.constant(1, tf.int64))), [False] * 4)
    np.testing.assert_array_equal(np.asarray(layer.learnt_blocks(tf.constant(2, tf.int64))), [True] * 4)
    curriculum = make(warmup_epochs=2)
    np.testing.assert_array_equal(np.asarray(curriculum.learnt_blocks(tf.constant(3, tf.int64))),
                                  [False, False, True, True])


def test_sparsity_and_sharing_regularisers():
    layer = make(sparsity_weight=0.3, sharing_weight=0.7, curriculum=False)
    layer(X, training=True)
    logits = np.asarray(layer.policy_logits, np.float64)
    a = np.exp(logits[..., 0]) / np.exp(logits).sum(-1)  # [T, L] probability of select
    sparsity = np.log(a).sum()
    weights = (4 - np.arange(1, 5)) / 4
    sharing = sum((weights * np.abs(a[i] - a[j])).sum() for i in range(3) for j in range(i + 1, 3))
    assert len(layer.losses) == 1
    assert float(layer.losses[0]) == pytest.approx(0.3 * sparsity + 0.7 * sharing, rel=1e-5)
    with tf.GradientTape() as tape:
        loss = tf.add_n([tf.reduce_sum(h) for h in layer(X, training=True)])
    assert np.abs(np.asarray(tape.gradient(loss, layer.policy_logits))).max() > 0


def test_inference_runs_the_most_likely_policy_hard_and_the_frozen_policy_only_its_blocks():
    layer = make(curriculum=False)
    logits = np.asarray(layer.policy_logits)
    hard = (logits[..., 0] >= logits[..., 1]).astype(int)
    assert 0 < hard.sum() < hard.size
    want = np_run(layer, hard)
    eager = to_numpy(layer(X, training=False))
    graph = to_numpy(tf.function(lambda x: layer(x, training=False))(X))
    for k in range(3):
        np.testing.assert_allclose(eager[k], want[k], atol=1e-5)
        np.testing.assert_allclose(graph[k], want[k], atol=1e-5)
    assert layer.freeze() == hard.tolist()
    frozen = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec([None, 4]))
    matmuls = sum(op.type == "MatMul" for op in frozen.graph.get_operations())
    paths = {tuple(np.flatnonzero(hard[k][:l + 1])) for k in range(3) for l in range(4) if hard[k][l]}
    assert matmuls == 2 * len(paths)  # each distinct prefix of selected blocks once, skipped blocks never
    trained = to_numpy(layer(X, training=True))
    for k in range(3):
        np.testing.assert_allclose(trained[k], want[k], atol=1e-5)
    assert not layer.losses  # frozen: no sampling, no regularisers


@pytest.mark.parametrize("frozen", [False, True])
def test_keras_file_round_trip(frozen, tmp_path):
    x = keras.Input((4,), name="x")
    outs = AdaShareBlocks(2, 3, sparsity_weight=0.2, name="blocks")(x)
    model = keras.Model(x, {"a": outs[0], "b": outs[1]})
    layer = model.get_layer("blocks")
    layer.policy_logits.assign(np.random.default_rng(2).normal(size=(2, 3, 2)).astype("float32"))
    layer.curriculum = False  # every block learnt, so the policy is the logits' argmax
    if frozen:
        layer.freeze()
    before = to_numpy(model(X[:, :4]))
    loaded = save_and_load(model, tmp_path)
    after = to_numpy(loaded(X[:, :4]))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)
    assert loaded.get_layer("blocks").frozen == frozen
    assert loaded.get_layer("blocks").get_config()["policy"] == layer.get_config()["policy"]


def test_bad_input():
    with pytest.raises(ValueError, match="num_tasks"):
        AdaShareBlocks(1, 3)
    with pytest.raises(ValueError, match="temperature"):
        AdaShareBlocks(2, 3, temperature=0.0)
    with pytest.raises(ValueError, match="temperature_decay"):
        AdaShareBlocks(2, 3, temperature_decay=-1.0)
    with pytest.raises(ValueError, match="policy"):
        AdaShareBlocks(2, 3, policy=[[1, 0, 1]])
    with pytest.raises(ValueError, match="sparsity_weight"):
        AdaShareBlocks(2, 3, sparsity_weight=-0.1)
    with pytest.raises(ValueError, match="inputs"):
        AdaShareBlocks(2, 3)(tf.ones([2, 3, 4]))
    with pytest.raises(ValueError, match="still searching its `policy`"):
        layer = AdaShareBlocks(2, 3)
        layer(tf.ones([2, 3]))
        layer.check_frozen()
