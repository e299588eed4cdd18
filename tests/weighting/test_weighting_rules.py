"""FAMO, RLW, GLS, STCH, IMTL-L and ExcessMTL against independent NumPy implementations of
their papers' rules, driven step by step (weights, update, on_epoch_end) over given losses and
gradients; bad hyper-parameters; zero and negative losses; serialization; the examples."""

import doctest
import importlib
import json

import numpy as np
import pytest

from mtl_keras import losses, weighting
from mtl_keras.backend import keras, tf
from mtl_keras.core.step import TrainStep

TASK_COUNTS = [2, 3, 4]
STEPS = 24


def names(count):
    return [f"t{i}" for i in range(count)]


def loss_sequence(count, steps=STEPS, seed=0):
    """Positive, noisy, mostly falling losses (float32 values, as the step sees them)."""
    rng = np.random.default_rng(seed + count)
    trend = np.exp(-0.05 * np.arange(steps))[:, None] * rng.uniform(0.3, 3.0, size=count)
    return (trend * np.exp(0.2 * rng.standard_normal((steps, count)))).astype(np.float32)


def step_of(task_losses, **fields):
    """A stand-in for the train step's TrainStep: the fields a weighting's update reads."""
    values = dict.fromkeys(TrainStep._fields)
    values.update(task_losses=tf.convert_to_tensor(task_losses), **fields)
    return TrainStep(**values)


def built(method, count, **kwargs):
    method.build(names(count), **kwargs)
    return method


def np_softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def numeric_gradient(f, x, h=1e-6):
    """Central differences of a scalar function of a float64 vector."""
    x = np.asarray(x, np.float64)
    grad = np.zeros_like(x)
    for i in range(x.size):
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        grad[i] = (f(up) - f(down)) / (2 * h)
    return grad


# ------------------------------------------------------------------------------------- FAMO
def np_famo(sequence, gamma, lr, optimizer):
    """Liu et al. 2023, Algorithm 1, with delta measured from each step's losses to the next's."""
    count = sequence.shape[1]
    xi, m, v, k = np.zeros(count), np.zeros(count), np.zeros(count), 0
    previous, out = None, []
    for losses_t in sequence.astype(np.float64):
        if previous is not None:
            z = np_softmax(xi)
            jacobian = np.diag(z) - np.outer(z, z)  # dz/dxi
            g = jacobian.T @ (np.log(previous) - np.log(losses_t)) + gamma * xi
            if optimizer == "sgd":
                xi = xi - lr * g
            else:
                k += 1
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                xi = xi - lr * (m / (1 - 0.9**k)) / (np.sqrt(v / (1 - 0.999**k)) + 1e-8)
        z = np_softmax(xi)
        c = 1.0 / np.sum(z / losses_t)
        out.append(c * z / losses_t)  # d = c sum_t z_t / L_t grad L_t
        previous = losses_t
    return np.array(out), xi


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_famo_matches_the_paper(optimizer):
    for count in TASK_COUNTS:
        check_famo(count, optimizer)


def check_famo(count, optimizer):
    sequence = loss_sequence(count)
    famo = built(losses.FAMO(gamma=0.01, w_lr=2.0 if optimizer == "sgd" else 0.1, optimizer=optimizer), count)
    got = []
    for losses_t in sequence:
        got.append(famo.weights(tf.constant(losses_t)).numpy())
        famo.update(step_of(losses_t))
    want, logits = np_famo(sequence, 0.01, famo.w_lr, optimizer)
    np.testing.assert_allclose(np.array(got), want, atol=1e-5)
    assert np.abs(logits).max() > 0.05  # the logits moved: the sequence tests the update
    # The update the last step's losses complete is saved state: the logits equal the paper's.
    np.testing.assert_allclose(np.asarray(famo.logits), logits, atol=1e-5)


# -------------------------------------------------------------------------------------- RLW
@pytest.mark.parametrize("distribution", ["normal", "uniform", "dirichlet"])
def test_rlw_draws_from_seed_and_step(distribution):
    for count in TASK_COUNTS:
        check_rlw(count, distribution)


def check_rlw(count, distribution):
    rlw = built(losses.RandomLossWeighting(distribution, seed=11), count)
    sequence = loss_sequence(count)
    got = []
    for losses_t in sequence:
        got.append(rlw.weights(tf.constant(losses_t)).numpy())
        rlw.update(step_of(losses_t))
    for k, weights_k in enumerate(got):
        seed = tf.constant([11, k], tf.int64)
        if distribution == "normal":
            want = np_softmax(tf.random.stateless_normal([count], seed).numpy().astype(np.float64))
        else:
            u = tf.random.stateless_uniform([count], seed).numpy().astype(np.float64)
            want = np_softmax(u) if distribution == "uniform" else np.log1p(-u) / np.log1p(-u).sum()
        np.testing.assert_allclose(weights_k, want, atol=1e-6)
    assert np.std(np.array(got)[:, 0]) > 0.01  # fresh weights every step
    # Another replica, or a run resumed at step 17, draws the same weights.
    resumed = built(losses.RandomLossWeighting(distribution, seed=11), count)
    resumed.state_variables["draws"].assign(17)
    np.testing.assert_array_equal(resumed.weights(tf.constant(sequence[17])).numpy(), got[17])


# -------------------------------------------------------------------------------------- GLS
def test_gls_weights_are_the_gradient_of_the_geometric_mean():
    for count in TASK_COUNTS:
        check_gls(count)


def check_gls(count):
    gls = built(losses.GeometricLossWeighting(), count)
    for losses_t in loss_sequence(count):
        want = numeric_gradient(lambda L: np.prod(L) ** (1.0 / count), losses_t)
        weights_t = gls.weights(tf.constant(losses_t)).numpy()
        np.testing.assert_allclose(weights_t, want, atol=1e-5, rtol=1e-5)
        # sum_t w_t L_t, the loss the trainer logs, is the geometric mean itself.
        np.testing.assert_allclose(np.sum(weights_t * losses_t), np.prod(losses_t.astype(np.float64)) ** (1 / count),
                                   rtol=1e-5)


# ------------------------------------------------------------------------------------- STCH
def np_stch(epochs, mu, warmup_epochs):
    """Lin et al. 2024: sum_t log L_t while warming up (nadir n = the last warm-up epoch's mean
    loss), then mu log sum_t exp(log(L_t / n_t) / mu); the weights are d(loss)/dL_t."""
    count = epochs[0].shape[1]
    nadir, out = np.ones(count), []
    for e, epoch in enumerate(epochs):
        for losses_t in epoch.astype(np.float64):
            if e < warmup_epochs:
                loss = lambda L: np.sum(np.log(L))  # noqa: E731
            else:
                loss = lambda L: mu * np.log(np.sum(np.exp(np.log(L / nadir) / mu)))  # noqa: E731
            out.append(numeric_gradient(loss, losses_t))
        if e < warmup_epochs:
            nadir = epoch.astype(np.float64).mean(axis=0)
    return np.array(out)


@pytest.mark.parametrize("warmup_epochs", [0, 2])
def test_stch_matches_the_paper(warmup_epochs):
    for count in TASK_COUNTS:
        check_stch(count, warmup_epochs)


def check_stch(count, warmup_epochs):
    epochs = np.split(loss_sequence(count), 4)  # 4 epochs of 6 steps
    stch = built(losses.SmoothTchebycheff(mu=0.3, warmup_epochs=warmup_epochs), count)
    got = []
    for epoch in epochs:
        for losses_t in epoch:
            got.append(stch.weights(tf.constant(losses_t)).numpy())
            stch.update(step_of(losses_t))
        stch.on_epoch_end()
    np.testing.assert_allclose(np.array(got), np_stch(epochs, 0.3, warmup_epochs), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------- IMTL-L
def test_imtl_l_scales_follow_the_paper():
    """sum_t e^(s_t) L_t - s_t, s trained by plain SGD here: s <- s - lr (e^s L - 1)."""
    for count in TASK_COUNTS:
        check_imtl_l(count)


def check_imtl_l(count):
    imtl = built(losses.IMTLLossScaling(), count)
    (scales,) = imtl.trainable_variables
    s, lr = np.zeros(count), 0.3
    for losses_t in loss_sequence(count):
        L = tf.constant(losses_t)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(imtl.weights(L) * L) + imtl.regularization()
        scales.assign_sub(lr * tape.gradient(loss, scales))
        np.testing.assert_allclose(imtl.weights(L).numpy(), np.exp(s - lr * (np.exp(s) * losses_t - 1)), rtol=1e-5)
        s = s - lr * (np.exp(s) * losses_t - 1)
    # The fixed point of e^(s) L = 1: the scaled losses approach 1.
    assert np.abs(np.exp(s) * losses_t - 1).max() < np.abs(losses_t - 1).max()


# -------------------------------------------------------------------------------- ExcessMTL
def np_excess_mtl(gradients, eta):
    """He et al. 2024 (the authors' code): AdaGrad-style excess risk g^T diag(sqrt(sum g^2 + 1e-7))^-1 g,
    divided by the first step's; alpha <- alpha exp(eta r), renormalised to sum to T."""
    count = gradients.shape[1]
    squares, alpha, initial, out = 0.0, np.ones(count), None, []
    for g in gradients.astype(np.float64):
        out.append(alpha.copy())  # the weights a step uses come before its own gradients
        squares = squares + g * g
        excess = np.sum(g * g / np.sqrt(squares + 1e-7), axis=1)
        if initial is None:
            initial = excess
            continue
        alpha = alpha * np.exp(eta * excess / initial)
        alpha = count * alpha / alpha.sum()
    return np.array(out), alpha


def test_excess_mtl_matches_the_paper():
    for count in TASK_COUNTS:
        check_excess_mtl(count)


def check_excess_mtl(count):
    rng = np.random.default_rng(count)
    # Tasks whose gradients shrink at different rates, so the excess risks differ.
    decay = np.exp(-np.linspace(0.0, 0.2, count))[None, :, None] ** np.arange(STEPS)[:, None, None]
    gradients = (rng.standard_normal((STEPS, count, 5)) * decay * rng.uniform(0.5, 2, (1, count, 1))).astype(np.float32)
    shared = tf.Variable(tf.zeros([5]))
    excess = built(losses.ExcessMTL(robust_step_size=0.3), count, shared_variables=[shared])
    got = []
    for g, losses_t in zip(gradients, loss_sequence(count)):
        got.append(excess.weights(tf.constant(losses_t)).numpy())
        with tf.GradientTape(persistent=True) as tape:
            # Linear shares: each task's gradient on the shared variable is exactly g_t.
            shares = [tf.reduce_sum(g[t] * shared) for t in range(count)]
        excess.update(step_of(losses_t, tape=tape, task_loss_shares=shares))
    want, last = np_excess_mtl(gradients, 0.3)
    np.testing.assert_allclose(np.array(got), want, atol=1e-5)
    np.testing.assert_allclose(excess.weights(None).numpy(), last, atol=1e-5)
    assert np.ptp(last) > 0.01


# ------------------------------------------------------------------ bad input and clamping
BAD = [
    (lambda: losses.FAMO(gamma=-0.1), "gamma"),
    (lambda: losses.FAMO(w_lr=0.0), "w_lr"),
    (lambda: losses.FAMO(optimizer="rmsprop"), "optimizer"),
    (lambda: losses.FAMO(epsilon=0.0), "epsilon"),
    (lambda: losses.RandomLossWeighting(distribution="cauchy"), "distribution"),
    (lambda: losses.RandomLossWeighting(seed=1.5), "seed"),
    (lambda: losses.GeometricLossWeighting(epsilon=-1.0), "epsilon"),
    (lambda: losses.SmoothTchebycheff(mu=0.0), "mu"),
    (lambda: losses.SmoothTchebycheff(warmup_epochs=-1), "warmup_epochs"),
    (lambda: losses.SmoothTchebycheff(warmup_epochs=1.5), "warmup_epochs"),
    (lambda: losses.ExcessMTL(robust_step_size=0.0), "robust_step_size"),
]


def test_out_of_range_hyper_parameters():
    for make, argument in BAD:
        with pytest.raises(ValueError, match=f"`{argument}` must be"):
            make()


def test_zero_and_negative_losses_give_a_finite_step():
    """The methods that take logs clamp L to epsilon: the weights and the weighted gradient stay finite."""
    for make in (losses.FAMO, losses.GeometricLossWeighting, lambda: losses.SmoothTchebycheff(warmup_epochs=1)):
        check_finite(make)


def check_finite(make):
    method = built(make(), 3)
    variable = tf.Variable([0.5, -0.3, 0.2])
    for values in ([0.0, -1.0, 0.5], [0.0, -2.0, 0.4], [1e-12, -0.5, 0.3]):
        with tf.GradientTape() as tape:
            shares = tf.constant(values) + variable - tf.stop_gradient(variable)
            loss = tf.reduce_sum(method.weights(tf.stop_gradient(shares)) * shares)
        gradient = tape.gradient(loss, variable)
        assert np.all(np.isfinite(gradient.numpy())) and np.isfinite(float(loss))
        method.update(step_of(values))
        method.on_epoch_end()
    assert all(np.all(np.isfinite(np.asarray(v))) for v in method.state_variables.values())


# ------------------------------------------------------------------- names and serialization
NEW = {
    "famo": losses.FAMO, "rlw": losses.RandomLossWeighting, "gls": losses.GeometricLossWeighting,
    "stch": losses.SmoothTchebycheff, "imtl_l": losses.IMTLLossScaling, "excess_mtl": losses.ExcessMTL,
}


def test_string_id_and_keras_serialization():
    for name in sorted(NEW):
        check_serialization(name)


def check_serialization(name):
    assert type(weighting.get(name)) is NEW[name]
    assert NEW[name].__name__ in weighting.__all__ and NEW[name].__name__ in losses.__all__
    original = NEW[name]()
    config = keras.saving.serialize_keras_object(original)
    json.dumps(config)
    revived = keras.saving.deserialize_keras_object(config)
    assert type(revived) is NEW[name] and revived.get_config() == original.get_config()


def test_examples():
    for module in ["famo", "rlw", "gls", "stch", "imtl_l", "excess_mtl"]:
        check_examples(module)


def check_examples(module):
    target = importlib.import_module(f"mtl_keras.weighting.{module}")
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(target, globs=dict(vars(target), tf=tf)) if t.examples]
    assert tests
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_steps_under_xla_equal_eager_steps():
    """weights + update compiled with XLA (fit's default) give the eager values; RLW's draws
    come from XLA's own kernels, so only its simplex is checked."""
    sequence = loss_sequence(3, steps=4)
    gradients = np.random.default_rng(1).standard_normal((4, 3, 5)).astype(np.float32)

    def run(make, jit):
        shared = tf.Variable(tf.zeros([5]))
        method = built(make(), 3, **({"shared_variables": [shared]} if make is losses.ExcessMTL else {}))

        def one_step(losses_t, g):
            with tf.GradientTape(persistent=True) as tape:
                shares = [tf.reduce_sum(g[t] * shared) for t in range(3)]
            weights_t = method.weights(losses_t)
            method.update(step_of(losses_t, tape=tape, task_loss_shares=shares))
            return weights_t

        function = tf.function(one_step, jit_compile=True) if jit else one_step
        return np.array([function(tf.constant(L), tf.constant(g)).numpy() for L, g in zip(sequence, gradients)])

    for make in NEW.values():
        compiled_weights = run(make, jit=True)
        if make is losses.RandomLossWeighting:
            np.testing.assert_allclose(compiled_weights.sum(axis=1), 1.0, rtol=1e-6)
        else:
            np.testing.assert_allclose(compiled_weights, run(make, jit=False), rtol=1e-5, atol=1e-6)
