import math

import numpy as np
import pytest

from conftest import save_and_load, to_numpy
from mtl_keras.backend import keras, tf
from mtl_keras.layers import HardConcreteRouter

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1


def np_z_hat(log_alpha):
    return np.clip(1 / (1 + np.exp(-log_alpha)) * (ZETA - GAMMA) + GAMMA, 0, 1)


def inputs(widths=(5, 6), batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch, w)).astype("float32") for w in widths]


def assign(router, log_alpha):
    router.log_alpha.assign(np.array(log_alpha, "float32"))


def test_serving_gates_follow_the_estimator_with_exact_zeros():
    router = HardConcreteRouter(2, units=3)
    router(inputs())
    log_alpha = [[-20.0, 0.3], [2.0, 15.0]]
    assign(router, log_alpha)
    z = router.serving_gates()
    np.testing.assert_allclose(z, np_z_hat(np.array(log_alpha)), atol=1e-6)
    assert z[0, 0] == 0.0 and z[1, 1] == 1.0


@pytest.mark.parametrize("mode", ["trans", "avg"])
def test_inference_equals_the_snr_formula(mode):
    widths = (5, 6) if mode == "trans" else (5, 5)
    router = HardConcreteRouter(3, mode=mode, units=4 if mode == "trans" else None)
    u = inputs(widths)
    router(u)
    assign(router, [[0.5, -20.0], [1.0, 2.0], [-1.0, 0.0]])
    z = router.serving_gates()
    for got in (to_numpy(router(u, training=False)), to_numpy(tf.function(lambda a: router(a, training=False))(u))):
        for i in range(3):
            if mode == "trans":
                want = sum(z[i, j] * u[j] @ np.array(router.kernels[j])[:, i, :] for j in range(2))
            else:
                want = sum(z[i, j] * u[j] for j in range(2))
            np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_l0_penalty_is_added_in_training():
    router = HardConcreteRouter(2, units=3, l0_penalty=0.01)
    u = inputs()
    router(u)
    assign(router, [[0.0, 1.0], [-2.0, 3.0]])
    router(u, training=True)
    shift = BETA * math.log(-GAMMA / ZETA)
    want = 0.01 * (1 / (1 + np.exp(-(np.array([[0.0, 1.0], [-2.0, 3.0]]) - shift)))).sum()
    assert len(router.losses) == 1
    assert float(router.losses[0]) == pytest.approx(want, rel=1e-5)
    router(u, training=False)
    assert float(router.l0_norm()) * 0.01 == pytest.approx(want, rel=1e-5)


def test_training_samples_and_inference_is_deterministic():
    router = HardConcreteRouter(2, units=3)
    u = inputs()
    router(u)
    train_fn = tf.function(lambda a: router(a, training=True), jit_compile=True)
    samples = [to_numpy(train_fn(u))[0] for _ in range(3)]
    assert not np.allclose(samples[0], samples[1]) and not np.allclose(samples[1], samples[2])
    inference = [to_numpy(router(u, training=False))[0] for _ in range(2)]
    np.testing.assert_array_equal(inference[0], inference[1])


def test_training_gates_are_the_hard_concrete_sample_of_the_steps_noise():
    """z = min(1, max(0, sigmoid((log u - log(1 - u) + log_alpha) / beta) (zeta - gamma) + gamma)),
    u the stateless uniform noise of (step, seed): the layer's noise, the formula in NumPy."""
    router = HardConcreteRouter(3, mode="avg", seed=7)
    u = inputs((5, 5))
    router(u)
    log_alpha = np.array([[0.5, -1.0], [2.0, -3.0], [0.0, 1.5]])
    assign(router, log_alpha)
    inside = 0
    for step in range(2):  # the counter moves: step 1 draws new noise
        noise = tf.random.stateless_uniform([3, 2], seed=tf.constant([step, 7], tf.int64), minval=1e-6, maxval=1.0 - 1e-6)
        noise = np.asarray(noise, np.float64)
        s = 1 / (1 + np.exp(-(np.log(noise) - np.log(1 - noise) + log_alpha) / BETA))
        z = np.clip(s * (ZETA - GAMMA) + GAMMA, 0, 1)
        inside += int(((z > 0) & (z < 1)).sum())
        got = to_numpy(router(u, training=True))
        for i in range(3):
            np.testing.assert_allclose(got[i], z[i, 0] * u[0] + z[i, 1] * u[1], atol=1e-5)
    assert inside >= 4  # most gates off the clip, where beta and the stretch show


def test_gradients_reach_log_alpha_and_a_large_penalty_closes_routes():
    router = HardConcreteRouter(4, units=3, l0_penalty=5.0, log_alpha_init=1.0)
    u = inputs(batch=16)
    router(u)
    with tf.GradientTape() as tape:
        out = router(u, training=True)
        loss = tf.add_n([tf.reduce_mean(v) for v in out]) + tf.add_n(router.losses)
    grad = tape.gradient(loss, router.log_alpha)
    assert grad is not None and np.abs(np.array(grad)).max() > 0
    closed_before = int((router.serving_gates() == 0).sum())
    optimizer = keras.optimizers.SGD(0.5)
    for _ in range(30):
        with tf.GradientTape() as tape:
            out = router(u, training=True)
            loss = 0.01 * tf.add_n([tf.reduce_mean(tf.square(v)) for v in out]) + tf.add_n(router.losses)
        optimizer.apply_gradients([(tape.gradient(loss, router.log_alpha), router.log_alpha)])
    assert int((router.serving_gates() == 0).sum()) > closed_before


def count_ops(fn, args, op_type):
    graph = tf.function(fn).get_concrete_function(*args).graph
    return sum(op.type == op_type for op in graph.get_operations())


def test_frozen_router_does_not_compute_closed_routes():
    router = HardConcreteRouter(2, units=3)
    u = inputs()
    router(u)
    specs = [[tf.TensorSpec([None, 5]), tf.TensorSpec([None, 6])]]
    router.freeze()
    open_ops = count_ops(lambda a: router(a, training=False), specs, "MatMul")
    assign(router, [[-20.0, 1.0], [1.0, -20.0]])
    router.freeze()
    pruned_ops = count_ops(lambda a: router(a, training=False), specs, "MatMul")
    assert open_ops == 4 and pruned_ops == 2
    z = router.serving_gates()
    got = to_numpy(router(u, training=False))
    np.testing.assert_allclose(got[0], z[0, 1] * u[1] @ np.array(router.kernels[1])[:, 0, :], atol=1e-5)


def test_keras_file_round_trip(tmp_path):
    a, b = keras.Input((5,), name="a"), keras.Input((6,), name="b")
    outs = HardConcreteRouter(2, units=3, name="router")([a, b])
    model = keras.Model([a, b], {"x": outs[0], "y": outs[1]})
    router = model.get_layer("router")
    assign(router, [[-20.0, 0.5], [1.0, 2.0]])
    u = inputs()
    before = to_numpy(model(u))
    loaded = save_and_load(model, tmp_path)
    after = to_numpy(loaded(u))
    for key in before:
        np.testing.assert_allclose(after[key], before[key], atol=1e-6)
    np.testing.assert_allclose(loaded.get_layer("router").serving_gates(), router.serving_gates())
    assert HardConcreteRouter.from_config(router.get_config()).get_config() == router.get_config()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beta=0.0), "beta"),
        (dict(gamma=0.0), "gamma"),
        (dict(zeta=1.0), "zeta"),
        (dict(mode="max"), "mode"),
        (dict(units=None), "units"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HardConcreteRouter(2, **dict(dict(units=3), **kwargs))


def test_avg_needs_inputs_of_one_width():
    with pytest.raises(ValueError, match="one width"):
        HardConcreteRouter(2, mode="avg")(inputs((5, 6)))
