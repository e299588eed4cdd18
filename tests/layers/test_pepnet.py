import numpy as np
import pytest

from conftest import outputs_and_gradients, save_and_load, to_numpy
from mtl_keras import datasets, models
from mtl_keras import features as F
from mtl_keras.backend import keras, tf
from mtl_keras.layers import EPNet, PPNet


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gate_nu_numpy(x, gate, scale):
    """Chang et al. 2023: GateNU(x) = gamma * sigmoid(W2 relu(W1 x + b1) + b2)."""
    (k1, b1), (k2, b2) = [(np.asarray(k), np.asarray(b)) for k, b in gate]
    return scale * sigmoid(np.maximum(x @ k1 + b1, 0) @ k2 + b2)


def _inputs(seed=0, width=5, prior=3, batch=6):
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.normal(size=(batch, w)).astype("float32")) for w in (width, prior)]


def test_epnet_equals_the_paper_formula_and_stops_the_gate_gradient():
    main, prior = _inputs()
    layer = EPNet(hidden_units=7, scale=2.0)
    with tf.GradientTape() as tape:
        tape.watch(main)
        out = layer([main, prior])
        total = tf.reduce_sum(out)
    gate = gate_nu_numpy(np.concatenate([prior.numpy(), main.numpy()], axis=1), layer.gate, 2.0)
    np.testing.assert_allclose(out.numpy(), gate * main.numpy(), atol=1e-5)
    # The gate reads E under stop-gradient: d sum(O_ep) / dE is the gate itself.
    np.testing.assert_allclose(tape.gradient(total, main).numpy(), gate, atol=1e-5)


def test_ppnet_equals_the_paper_formula_in_eager_graph_and_xla():
    main, prior = _inputs(1)
    layer = PPNet(num_tasks=3, units=(4, 2), scale=2.0)
    eager = to_numpy(layer([main, prior]))
    gate_input = np.concatenate([prior.numpy(), main.numpy()], axis=1)
    hidden = [main.numpy()] * 3
    for gate, towers in zip(layer.gates, layer.towers):
        deltas = np.split(gate_nu_numpy(gate_input, gate, 2.0), 3, axis=1)
        hidden = [np.maximum((d * h) @ np.asarray(k) + np.asarray(b), 0) for d, h, (k, b) in zip(deltas, hidden, towers)]
    for got, want in zip(eager, hidden):
        np.testing.assert_allclose(got, want, atol=1e-5)
    graph, graph_grads = outputs_and_gradients(layer, [main, prior], jit_compile=False)
    xla, xla_grads = outputs_and_gradients(layer, [main, prior], jit_compile=True)
    for a, b, c in zip(eager, graph, xla):
        np.testing.assert_allclose(b, a, atol=1e-6)
        np.testing.assert_allclose(c, a, atol=1e-5)
    assert all(np.isfinite(g).all() for g in graph_grads)
    for a, b in zip(graph_grads, xla_grads):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    for cls, layer in ((PPNet, layer), (EPNet, EPNet(kernel_regularizer="l2"))):
        assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


def test_builder_trains_on_prior_dependent_tasks_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(512, 6)).astype("float32")
    user = rng.normal(size=(512, 2)).astype("float32")
    # The prior decides which features matter: what a personalised gate can learn.
    y = {"a": ((x[:, 0] * np.sign(user[:, 0])) > 0).astype("float32")[:, None],
         "b": (x[:, 1] + user[:, 1] > 0).astype("float32")[:, None]}
    model = models.pepnet(keras.Input((6,), name="x"), keras.Input((2,), name="user"), ["a", "b"],
                          tower_units=(16, 8))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={"a": "binary_crossentropy", "b": "binary_crossentropy"},
                  jit_compile=False)
    feed = {"x": x, "user": user}
    history = model.fit(feed, y, epochs=3, batch_size=128, verbose=0).history
    assert history["a_loss"][-1] < history["a_loss"][0] and history["b_loss"][-1] < history["b_loss"][0]
    before = model.predict({k: v[:8] for k, v in feed.items()}, verbose=0)
    after = save_and_load(model, tmp_path).predict({k: v[:8] for k, v in feed.items()}, verbose=0)
    np.testing.assert_allclose(after["a"], before["a"], atol=1e-5)


def test_builder_takes_prior_features_from_a_feature_spec():
    x, _ = datasets.synthetic_recsys(64, seed=3, num_users=20, num_items=15, history_length=4)
    spec = F.FeatureSpec([F.Numeric("price"), F.Categorical("user_id", num_buckets=50, embedding_dim=4),
                          F.Categorical("item_id", embedding_dim=4)])
    spec.adapt(x)
    model = models.pepnet(spec, ["user_id"], ["ctr", "cvr"], tower_units=(4,), prior_embedding_dim=3)
    feed = {name: x[name][:5] for name in ("price", "user_id", "item_id")}
    assert {task: tuple(p.shape) for task, p in model(feed).items()} == {"ctr": (5, 1), "cvr": (5, 1)}
    # EPNet's gate reads the prior (3) and the features (price 1 + two 4-wide tables).
    assert tuple(model.get_layer("epnet").gate[0][0].shape) == (3 + 9, 9)
    with pytest.raises(ValueError, match="`prior_inputs` must be a non-empty list of Categorical"):
        models.pepnet(spec, ["no_such_feature"], ["ctr", "cvr"])
    with pytest.raises(ValueError, match="`prior_inputs` must be a non-empty list of Categorical"):
        models.pepnet(spec, [], ["ctr", "cvr"])


@pytest.mark.parametrize("prior", [None, {}, "user"])
def test_missing_or_empty_prior_inputs(prior):
    with pytest.raises(ValueError, match="`prior_inputs` must be a Keras input"):
        models.pepnet(keras.Input((6,), name="x"), prior, ["a", "b"])


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="scale"):
        EPNet(scale=0.0)
    with pytest.raises(ValueError, match="num_tasks"):
        PPNet(0, (4,))
    with pytest.raises(ValueError, match=r"EPNet `inputs` must be a list \[inputs \[B, D\], prior"):
        EPNet()(tf.ones([2, 3]))
