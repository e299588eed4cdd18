"""DB-MTL, MoCo, SDMGrad, MoDo, GradDrop and RGW: the methods that need more than the Gram matrix.

Each against an independent NumPy implementation of its paper's rule (over >= 20 steps of given
gradients and losses, T = 2, 3, 4), inside the train step, saved and resumed, and their arguments.
"""

import numpy as np
import pytest

from conftest import save_and_load
from mtl_keras import MultiTaskModel, datasets, losses, models
from mtl_keras import features as F
from mtl_keras.layers import ExpertGate
from mtl_keras.backend import keras, tf

STEPS = 24


def gradient_sequence(num_tasks, seed, size=7):
    """Conflicting, badly scaled task gradients and positive losses, one set a step."""
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-2, 2, size=num_tasks)
    gradients = [rng.normal(size=(num_tasks, size)) * scales[:, None] for _ in range(STEPS)]
    task_losses = [rng.uniform(0.05, 3.0, size=num_tasks) for _ in range(STEPS)]
    return gradients, task_losses


def simplex_projection(v):
    """argmin ||x - v||, x >= 0, sum x = 1, by bisection on the threshold (not the sort-based rule)."""
    low, high = v.min() - 1.0, v.max()
    for _ in range(200):
        theta = (low + high) / 2
        if np.maximum(v - theta, 0).sum() > 1:
            low = theta
        else:
            high = theta
    return np.maximum(v - (low + high) / 2, 0)


def numpy_db_mtl(gradients, task_losses, beta, beta_sigma, bias_correction=True, eps=1e-8):
    average, decay, updates = np.zeros_like(gradients[0]), 1.0, []
    for k, (g, loss) in enumerate(zip(gradients, task_losses), start=1):
        beta_k = beta / k**beta_sigma
        average = beta_k * average + (1 - beta_k) * g / np.maximum(loss, eps)[:, None]
        decay *= beta_k
        estimate = average / (1 - decay) if bias_correction else average
        norms = np.linalg.norm(estimate, axis=1)
        alpha = norms.max() / (norms + eps)
        updates.append(alpha @ estimate)
    return updates


def numpy_moco(gradients, beta, beta_sigma, gamma, gamma_sigma, rho):
    num_tasks = gradients[0].shape[0]
    tracked, weights, updates = np.zeros_like(gradients[0]), np.full(num_tasks, 1.0 / num_tasks), []
    for k, g in enumerate(gradients, start=1):
        tracked = tracked - beta / k**beta_sigma * (tracked - g)
        system = tracked @ tracked.T + rho * np.eye(num_tasks)
        weights = simplex_projection(weights - gamma / k**gamma_sigma * system @ weights)
        updates.append(weights @ tracked)
    return updates


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
@pytest.mark.parametrize("beta, beta_sigma, bias_correction", [(0.9, 0.0, True), (0.6, 0.5, False)])
def test_db_mtl_follows_the_paper(num_tasks, beta, beta_sigma, bias_correction):
    gradients, task_losses = gradient_sequence(num_tasks, seed=num_tasks)
    method = losses.DBMTL(beta=beta, beta_sigma=beta_sigma, bias_correction=bias_correction)
    expected = numpy_db_mtl(gradients, task_losses, beta, beta_sigma, bias_correction)
    for g, loss, want in zip(gradients, task_losses, expected):
        got = method.combine(g.astype("float32"), loss.astype("float32")).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    # Every task's running gradient was scaled to the largest norm.
    assert abs(float(tf.reduce_min(method.last_weights)) - 1.0) < 1e-6


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
def test_moco_follows_the_paper(num_tasks):
    gradients, _ = gradient_sequence(num_tasks, seed=10 + num_tasks, size=5)
    gradients = [g / 30.0 for g in gradients]  # lambda's step must not jump straight to a vertex
    options = dict(beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.01)
    method = losses.MoCo(**options)
    expected = numpy_moco(gradients, **options)
    for g, want in zip(gradients, expected):
        got = method.combine(g.astype("float32")).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    weights = method.last_weights.numpy()
    assert abs(weights.sum() - 1) < 1e-6 and weights.min() >= 0


def test_db_mtl_and_moco_stay_finite_on_degenerate_gradients():
    for gradients in (np.zeros((3, 4)), np.array([[1.0, 2, 0, 0]] * 3), np.array([[1.0, 0, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 0]])):
        for method in (losses.DBMTL(), losses.MoCo()):
            for _ in range(3):
                out = method.combine(gradients.astype("float32"), np.zeros(3, "float32")).numpy()
                assert np.all(np.isfinite(out)), (type(method).__name__, gradients)


def numpy_graddrop_masks(signals, uniform, leak):
    purity = 0.5 * (1 + signals.sum(0) / (np.abs(signals).sum(0) + 1e-7))
    keep = ((purity > uniform) & (signals > 0)) | ((purity < uniform) & (signals < 0))
    leak = np.reshape(np.asarray(leak, "float64"), (-1,) + (1,) * (signals.ndim - 1))
    return leak + (1 - leak) * keep


@pytest.mark.parametrize("leak", [0.0, 0.3, [0.0, 0.5, 1.0]])
def test_graddrop_masks_and_combination_follow_the_paper(leak):
    rng = np.random.default_rng(5)
    grads = rng.normal(size=(3, 4, 6)).astype("float32")  # [T, B, H]
    activations = rng.normal(size=(4, 6)).astype("float32")
    method = losses.GradDrop(leak=leak, seed=9)
    method.build(3)
    signals = (np.sign(activations)[None] * grads).sum(axis=1)
    uniform = rng.uniform(size=6).astype("float32")
    masks = numpy_graddrop_masks(signals, uniform, leak)
    np.testing.assert_allclose(method.masks(tf.constant(signals), tf.constant(uniform)), masks, atol=1e-6)
    # The combination, with the U of the method's first draw (seed, step 0).
    drawn = tf.random.stateless_uniform([6], tf.constant([9, 0], tf.int64)).numpy()
    expected = (numpy_graddrop_masks(signals, drawn, leak)[:, None] * grads).sum(0)
    np.testing.assert_allclose(method.combine_representation(grads, activations), expected, rtol=1e-5, atol=1e-6)


def test_graddrop_keeps_each_sign_with_its_purity_over_many_draws():
    signals = np.array([[2.0, -1.0, 0.5], [-1.0, -1.0, 1.5]], "float32")  # P = (2/3, 0, 1)
    method = losses.GradDrop(seed=4)
    method.build(2)
    draws = 4000
    uniform = tf.random.stateless_uniform([draws, 3], tf.constant([4, 0], tf.int64))
    kept = method.masks(tf.tile(tf.constant(signals)[:, None], [1, draws, 1]), uniform).numpy().mean(axis=1)
    purity = 0.5 * (1 + signals.sum(0) / np.abs(signals).sum(0))
    expected = np.where(signals > 0, purity, 1 - purity)
    standard_error = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(kept - expected) <= 3 * standard_error + 1e-9), (kept, expected)


def test_rgw_weights_are_the_papers_distribution_reproducible_and_fresh_each_step():
    num_tasks, draws = 3, 3000
    method = losses.RandomGradientWeighting(seed=21)
    method.build(num_tasks)
    gram = tf.eye(num_tasks)

    @tf.function
    def sample_weights():
        sample = tf.TensorArray(tf.float32, size=draws)
        for i in tf.range(draws):
            sample = sample.write(i, method.coefficients(gram, None))
        return sample.stack()

    sample = sample_weights().numpy()
    reference = np.random.default_rng(0).normal(size=(200_000, num_tasks))
    reference = np.exp(reference) / np.exp(reference).sum(1, keepdims=True)
    np.testing.assert_allclose(sample.sum(1), 1.0, atol=1e-6)
    mean_error = np.abs(sample.mean(0) - reference.mean(0))
    assert np.all(mean_error <= 3 * reference.std(0) / np.sqrt(draws)), mean_error
    std_error = np.abs(sample.std(0) - reference.std(0))
    assert np.all(std_error <= 3 * reference.std(0) / np.sqrt(2 * draws)), std_error
    again = losses.RandomGradientWeighting(seed=21)
    again.build(num_tasks)
    np.testing.assert_array_equal(again.coefficients(gram, None), sample[0])
    assert np.abs(sample[1] - sample[0]).max() > 1e-3


def numpy_sdmgrad(parts_sequence, lamda, niter, w_lr):
    num_tasks = np.shape(parts_sequence[0])[1]
    weights, updates = np.full(num_tasks, 1.0 / num_tasks), []
    for first, second in parts_sequence:
        cross = first @ second.T
        scale = np.mean(np.sqrt(np.maximum(np.diag(cross), 0)))
        cross = cross / (scale**2 if scale > 0 else 1.0)
        for _ in range(niter):
            weights = simplex_projection(weights - w_lr * (cross @ weights + lamda * cross.mean(axis=1)))
        g = (first + second) / 2
        updates.append((weights @ g + lamda * g.mean(axis=0)) / (1 + lamda))
    return updates


def numpy_modo(parts_sequence, gamma, rho):
    num_tasks = np.shape(parts_sequence[0])[1]
    weights, updates = np.full(num_tasks, 1.0 / num_tasks), []
    for first, second, third in parts_sequence:
        weights = simplex_projection(weights - gamma * (first @ second.T + rho * np.eye(num_tasks)) @ weights)
        updates.append(weights @ third)
    return updates


@pytest.mark.parametrize("num_tasks", [2, 3, 4])
def test_sdmgrad_and_modo_follow_their_papers(num_tasks):
    rng = np.random.default_rng(num_tasks)
    # Two samples of the same gradients: each half's gradient plus its own noise.
    means = [rng.normal(size=(num_tasks, 5)) * rng.uniform(0.1, 3, size=(num_tasks, 1)) for _ in range(STEPS)]
    halves = [m[None] + 0.3 * rng.normal(size=(2, num_tasks, 5)) * np.abs(m).mean() for m in means]
    thirds = [rng.normal(size=(3, num_tasks, 5)) / 4 for _ in range(STEPS)]
    sdm, modo = losses.SDMGrad(lamda=0.3, niter=5, w_lr=0.2), losses.MoDo(gamma=0.05, rho=0.1)
    sdm.build(num_tasks)
    modo.build(num_tasks)
    for method, parts_sequence, expected in [
        (sdm, halves, numpy_sdmgrad(halves, 0.3, 5, 0.2)),
        (modo, thirds, numpy_modo(thirds, 0.05, 0.1)),
    ]:
        for parts, want in zip(parts_sequence, expected):
            got = method.combine_sub_batches(tf.constant(parts, tf.float32), None).numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        weights = method.last_weights.numpy()
        assert abs(weights.sum() - 1) < 1e-6 and weights.min() >= 0


# ----------------------------------------------------------------------- inside the train step
TASKS = ("task1", "task2")


def data():
    return datasets.synthetic_tasks(64, correlation=0.2, dim=6, seed=2)


def build():
    keras.utils.set_random_seed(5)
    return models.shared_bottom(keras.Input((6,), name="x"), list(TASKS), bottom_units=(8,),
                                tower_units=(4,), task_types="regression")


def compiled(projection, mode="exact", optimizer=None, jit_compile=False):
    model = build()
    model.compile(optimizer=optimizer or keras.optimizers.SGD(0.05), loss={t: "mse" for t in TASKS},
                  gradient_projection=projection, projection_mode=mode, jit_compile=jit_compile)
    return model


def manual_run(model, x, y, steps, combine, sub_batches=1):
    """SGD on the whole batch with per-task gradients taken outside the train step: task-specific
    variables get the plain sum, the shared ones ``combine(G [T, P], losses [T])``, or with
    sub-batches ``combine([G_s for each sub-batch s (rows i mod S = s)], losses)``."""
    mse = keras.losses.MeanSquaredError()
    variables = model.trainable_variables
    shared = {id(v) for v in model.shared_variables}

    def flat_rows(tape, task_losses):
        rows = [[np.zeros(v.shape) if g is None else np.array(g) for g, v in
                 zip(tape.gradient(loss, variables), variables)] for loss in task_losses]
        flat = np.stack([np.concatenate([g.ravel() for g, v in zip(r, variables) if id(v) in shared]) for r in rows])
        return rows, flat

    for _ in range(steps):
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(x, training=True)
            task_losses = [mse(y[t], outputs[t]) for t in TASKS]
            part_losses = [[mse(y[t][s::sub_batches], outputs[t][s::sub_batches]) for t in TASKS]
                           for s in range(sub_batches)]
        rows, flat = flat_rows(tape, task_losses)
        if sub_batches > 1:
            flat = [flat_rows(tape, part)[1] for part in part_losses]
        combined = combine(flat, np.array([float(l) for l in task_losses]))
        offset = 0
        for index, variable in enumerate(variables):
            if id(variable) in shared:
                size = int(np.prod(variable.shape))
                step = combined[offset:offset + size].reshape(variable.shape)
                offset += size
            else:
                step = rows[0][index] + rows[1][index]
            variable.assign(np.array(variable) - 0.05 * step)
    return [np.array(v) for v in variables]


@pytest.mark.parametrize("name", ["db_mtl", "moco"])
def test_gradient_state_methods_inside_the_train_step_follow_numpy(name):
    x, y = data()
    steps = 3
    model = compiled(name)
    model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
    reference = build()
    if name == "db_mtl":
        history = {"g": [], "l": []}

        def combine(flat, task_losses):
            history["g"].append(flat)
            history["l"].append(task_losses)
            return numpy_db_mtl(history["g"], history["l"], 0.9, 0.0)[-1]
    else:
        history = {"g": []}

        def combine(flat, task_losses):
            history["g"].append(flat)
            return numpy_moco(history["g"], 0.5, 0.5, 0.1, 0.5, 0.0)[-1]

    expected = manual_run(reference, x, y, steps, combine)
    for got, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(np.array(got), want, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", ["sdmgrad", "modo"])
def test_sub_batch_methods_inside_the_train_step_follow_numpy(name, jit_compile):
    # The sub-batches are the rows i mod S = s; the references take them the same way. Under XLA
    # the weights' solver runs in a loop block (coefficients_in_one_block) and must carry its state.
    x, y = data()
    steps = 3
    model = compiled(name, jit_compile=jit_compile)
    model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)
    history = []
    if name == "sdmgrad":
        def combine(parts, task_losses):
            history.append(parts)
            return numpy_sdmgrad(history, 0.3, 20, 5.0)[-1]
    else:
        def combine(parts, task_losses):
            history.append(parts)
            return numpy_modo(history, 1e-3, 0.1)[-1]
    expected = manual_run(build(), x, y, steps, combine, sub_batches=2 if name == "sdmgrad" else 3)
    for got, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(np.array(got), want, rtol=2e-4, atol=2e-6)


def test_sub_batch_methods_refuse_a_batch_too_small_to_split():
    x, y = data()
    model = build()
    model.compile(loss={t: "mse" for t in TASKS}, gradient_projection="modo")
    with pytest.raises(ValueError, match="3 sub-batches .*batch of 2 rows.*at least 3"):
        model.train_on_batch(x[:2], {t: v[:2] for t, v in y.items()})


@pytest.mark.parametrize("name, count", [("sdmgrad", 2), ("modo", 3)])
def test_sub_batch_methods_run_one_forward_pass_per_sub_batch(name, count):
    # Each sub-batch's per-task backward passes then cover its rows only (S T passes of B / S rows,
    # not of B). Mutation caught: one forward pass over the whole batch records [11] per step.
    seen = []

    class RowCount(keras.layers.Layer):
        def call(self, inputs):
            if inputs.shape[0] is not None:  # eager calls; the functional build's is symbolic
                seen.append(inputs.shape[0])
            return inputs

    x, y = data()
    inputs = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(8, activation="relu")(RowCount()(inputs))
    model = MultiTaskModel(inputs, {t: keras.layers.Dense(1, name=t)(hidden) for t in TASKS})
    model.compile(optimizer="sgd", loss={t: "mse" for t in TASKS}, gradient_projection=name, run_eagerly=True)
    seen.clear()
    model.train_on_batch(x[:11], {t: v[:11] for t, v in y.items()})
    assert seen == [len(range(s, 11, count)) for s in range(count)]


def test_graddrop_inside_the_train_step_masks_at_the_shared_representation():
    # With leak = 1 nothing is dropped: the step equals equal weights'. With leak = 0 and a
    # GradDrop whose draws are known, the shared bottom's gradient is the masked one.
    x, y = data()
    plain = compiled(None)
    plain.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    leaky = compiled(losses.GradDrop(leak=1.0, seed=0), mode="fast")
    leaky.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    for a, b in zip(plain.trainable_variables, leaky.trainable_variables):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)

    model = compiled(losses.GradDrop(seed=3), mode="fast")
    reference = build()
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    mse = keras.losses.MeanSquaredError()
    probe = keras.Model(reference.input, [reference.get_layer("shared_representation").output, reference.outputs])
    with tf.GradientTape(persistent=True) as tape:
        rep, outputs = probe(x, training=True)
        task_losses = [mse(y[t], o) for t, o in zip(TASKS, outputs)]
    per_task = np.stack([np.array(tape.gradient(loss, rep)) for loss in task_losses])
    signals = (np.sign(np.array(rep))[None] * per_task).sum(1)
    uniform = tf.random.stateless_uniform(signals.shape[1:], tf.constant([3, 0], tf.int64)).numpy()
    combined = (numpy_graddrop_masks(signals, uniform, 0.0)[:, None] * per_task).sum(0)
    shared = {id(v) for v in reference.shared_variables}
    for variable, got in zip(reference.trainable_variables, model.trainable_variables):
        if id(variable) in shared:
            gradient = tape.gradient(rep, variable, output_gradients=tf.constant(combined, tf.float32))
        else:
            gradient = sum(g for g in (tape.gradient(l, variable) for l in task_losses) if g is not None)
        np.testing.assert_allclose(np.array(got), np.array(variable) - 0.05 * np.array(gradient), rtol=1e-4, atol=1e-6)


def gated_over_a_shared_bottom():
    keras.utils.set_random_seed(7)
    inputs = keras.Input((6,), name="x")
    bottom = keras.layers.Dense(8, activation="relu", name="bottom")(inputs)
    mixed = ExpertGate(num_experts=3, expert_units=(5,), num_tasks=len(TASKS), name="mmoe")(bottom)
    return MultiTaskModel(inputs, {t: keras.layers.Dense(1, name=t)(m) for t, m in zip(TASKS, mixed)})


def mmoe_over_embeddings():
    # The builder's everyday form: the experts and each task's gate read the same embeddings.
    keras.utils.set_random_seed(7)
    spec = F.FeatureSpec([F.Numeric("price", mean=0.0, variance=1.0), F.Categorical("user_id", vocabulary=[3, 5, 8]),
                          F.Categorical("device", vocabulary=["ios", "web"])])
    return models.mmoe(spec, list(TASKS), num_experts=3, expert_units=(5,), task_types="regression")


def ple():
    keras.utils.set_random_seed(3)
    return models.ple(keras.Input((6,), name="x"), list(TASKS), task_types="regression")


def embedding_rows(x):
    rng = np.random.default_rng(1)
    return {"price": x[:, 0], "user_id": rng.choice([3, 5, 8], len(x)), "device": rng.choice(["ios", "web"], len(x))}


def trained(build, x, y, projection, epochs, jit_compile=False):
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss={t: "mse" for t in TASKS},
                  gradient_projection=projection, projection_mode="fast", jit_compile=jit_compile)
    model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)
    return model


@pytest.mark.parametrize("name", ["gates_over_a_bottom", "mmoe_over_embeddings", "ple"])
def test_graddrop_without_dropout_is_equal_weights_where_the_experts_are_not_the_only_path(name):
    # Gates reading the experts' input (a shared bottom, the embeddings) and PLE's nested levels
    # reach shared variables around one expert output: those paths keep the plain sum. Mutation
    # caught: the pass from the expert outputs alone (the gates' paths dropped, PLE's level-2
    # path counted twice) leaves the variables 0.004-0.2 off equal weights after two steps.
    x, y = data()
    build = {"gates_over_a_bottom": gated_over_a_shared_bottom, "mmoe_over_embeddings": mmoe_over_embeddings,
             "ple": ple}[name]
    x = embedding_rows(x) if name == "mmoe_over_embeddings" else x
    plain = trained(build, x, y, None, 2)
    leaky = trained(build, x, y, losses.GradDrop(leak=1.0, seed=0), 2)
    for a, b in zip(plain.trainable_variables, leaky.trainable_variables):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)
    assert leaky._mtl_trainer.mode.only_through_representation is False


@pytest.mark.parametrize("name", ["mmoe", "mmoe_over_embeddings"])
def test_graddrop_trains_under_mixed_float16(mixed_float16, name):
    # The loss scale meets a float16 upstream at the expert outputs (from them alone for the
    # MMoE over x, around them over the embeddings): without dropout, still equal weights.
    # Mutation caught: the float32 scale multiplied into the float16 upstream fails the trace.
    x, y = data()
    build = {"mmoe": lambda: models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=3,
                                         task_types="regression"),
             "mmoe_over_embeddings": mmoe_over_embeddings}[name]
    x = embedding_rows(x) if name == "mmoe_over_embeddings" else x

    def seeded():
        keras.utils.set_random_seed(7)
        return build()

    plain = trained(seeded, x, y, None, 2)
    leaky = trained(seeded, x, y, losses.GradDrop(leak=1.0, seed=0), 2)
    for a, b in zip(plain.trainable_variables, leaky.trainable_variables):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)
    assert leaky._mtl_trainer.mode.only_through_representation is (name == "mmoe")


@pytest.mark.parametrize("jit_compile", [False, True])
def test_graddrop_masks_only_the_experts_path_into_a_bottom_the_gates_also_read(jit_compile):
    # The bottom's gradient: the plain one (every path) plus, through the expert outputs, the
    # masks' change sum_t (M_t - 1) dL_t/dR. Mutation caught: the pass from the expert outputs
    # alone, 0.008 off after one step.
    x, y = data()
    model = trained(gated_over_a_shared_bottom, x, y, losses.GradDrop(seed=3), 1, jit_compile)
    reference = gated_over_a_shared_bottom()
    stack, mse = reference.get_layer("mmoe").experts, keras.losses.MeanSquaredError()
    with tf.GradientTape(persistent=True) as tape:
        outputs = reference(x, training=True)
        rep = stack.recorded_output
        task_losses = [mse(y[t], outputs[t]) for t in TASKS]
    per_task = np.stack([np.array(tape.gradient(loss, rep)) for loss in task_losses])
    signals = (np.sign(np.array(rep))[None] * per_task).sum(1)
    # XLA's stateless draws differ from TensorFlow's kernel's: drawn as the step draws them.
    uniform = tf.function(lambda: tf.random.stateless_uniform(signals.shape[1:], tf.constant([3, 0], tf.int64)),
                          jit_compile=jit_compile, autograph=False)().numpy()
    change = ((numpy_graddrop_masks(signals, uniform, 0.0)[:, None] - 1.0) * per_task).sum(0)
    assert np.abs(change).max() > 1e-3  # the masks drop something
    bottom = reference.get_layer("bottom").kernel
    expected = sum(tape.gradient(loss, bottom) for loss in task_losses) + tape.gradient(
        rep, bottom, output_gradients=tf.constant(change, tf.float32))
    np.testing.assert_allclose(np.array(model.get_layer("bottom").kernel),
                               np.array(bottom) - 0.05 * np.array(expected), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["db_mtl", "moco", "graddrop", "rgw", "sdmgrad", "modo"])
def test_save_load_continue_equals_the_uninterrupted_run(tmp_path, name):
    mode = "fast" if name == "graddrop" else "exact"
    # Seeded: a method made from its string id draws its seed at construction.
    make = {"db_mtl": losses.DBMTL, "moco": losses.MoCo, "sdmgrad": losses.SDMGrad, "modo": losses.MoDo,
            "graddrop": lambda: losses.GradDrop(seed=1),
            "rgw": lambda: losses.RandomGradientWeighting(seed=1)}[name]
    x, y = data()
    uninterrupted = compiled(make(), mode)
    uninterrupted.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first = compiled(make(), mode)
    first.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    resumed = save_and_load(first, tmp_path)
    state = resumed.training_state.projection.state_variables
    assert state and all(np.any(np.array(v) != 0) for k, v in state.items() if k != "lambda")
    resumed.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(uninterrupted.trainable_variables, resumed.trainable_variables):
        np.testing.assert_allclose(np.array(b), np.array(a), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["db_mtl", "moco", "graddrop", "rgw", "sdmgrad", "modo"])
def test_trains_the_synthetic_tasks_as_well_as_equal_weights(name):
    x, y = datasets.synthetic_tasks(2048, correlation=0.5, dim=6, seed=4)
    final = {}
    for method in (None, name):
        model = compiled(method, "fast" if method == "graddrop" else "exact", keras.optimizers.Adam(0.01))
        history = model.fit(x, y, batch_size=128, epochs=4, verbose=0)
        final[method] = sum(history.history[f"{t}_loss"][-1] for t in TASKS)
    assert final[name] <= 1.1 * final[None], final


def test_modes_and_arguments_are_checked():
    with pytest.raises(ValueError, match="projection_mode='exact' only .*parameters"):
        compiled("db_mtl", mode="fast")
    with pytest.raises(ValueError, match="projection_mode='fast' only .*representation"):
        compiled("graddrop", mode="exact")
    with pytest.raises(ValueError, match="projection_mode='exact' only .*sub-batch"):
        compiled("sdmgrad", mode="fast")
    for make, argument in [
        (lambda: losses.DBMTL(beta=1.0), "beta"), (lambda: losses.DBMTL(beta_sigma=-1), "beta_sigma"),
        (lambda: losses.MoCo(beta=0.0), "beta"), (lambda: losses.MoCo(gamma=0), "gamma"),
        (lambda: losses.MoCo(rho=-0.1), "rho"), (lambda: losses.GradDrop(leak=1.5), "leak"),
        (lambda: losses.RandomGradientWeighting(distribution="beta"), "distribution"),
        (lambda: losses.RandomGradientWeighting(seed=1.5), "seed"),
        (lambda: losses.SDMGrad(lamda=-1), "lamda"), (lambda: losses.SDMGrad(niter=0), "niter"),
        (lambda: losses.SDMGrad(w_lr=0), "w_lr"), (lambda: losses.MoDo(gamma=0), "gamma"),
        (lambda: losses.MoDo(rho=-1), "rho"),
    ]:
        with pytest.raises(ValueError, match=f"`{argument}`"):
            make()
    with pytest.raises(ValueError, match="task_losses"):
        losses.DBMTL().combine([[1.0, 0.0], [0.0, 1.0]])
    for name in ("db_mtl", "moco", "graddrop", "rgw"):
        method = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(
            {"db_mtl": losses.DBMTL(beta=0.5), "moco": losses.MoCo(rho=0.1), "graddrop": losses.GradDrop(leak=[0.1, 0.2]),
             "rgw": losses.RandomGradientWeighting(seed=3)}[name]))
        assert method.get_config() == type(method)(**method.get_config()).get_config()


def test_graddrop_logs_the_gram_matrix_of_the_expert_gradients_from_the_mixes(monkeypatch):
    # An expert stack read only through gated mixes gives the logs' Gram matrix from the mixes'
    # gradients (mixing_gram), not from the [T, B, E, H] ones: the cosines must equal the dense
    # ones. Mutation caught: a mixing Gram that drops the gate overlaps logs other cosines.
    from mtl_keras.layers.representation import RecordsRepresentation

    x, y = data()

    def logged_cosines():
        keras.utils.set_random_seed(5)
        model = models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=3, expert_units=(5,),
                            tower_units=(4,), task_types="regression")
        model.compile(optimizer="sgd", loss={t: "mse" for t in TASKS}, jit_compile=False,
                      gradient_projection=losses.GradDrop(seed=1), projection_mode="fast")
        logs = [model.train_on_batch(x, y, return_dict=True) for _ in range(2)]
        return [float(log["grad_cosine/task1__task2"]) for log in logs]

    from_mixes = logged_cosines()
    monkeypatch.setattr(RecordsRepresentation, "recorded_mixing_only", property(lambda self: None))
    dense = logged_cosines()
    np.testing.assert_allclose(from_mixes, dense, rtol=1e-5, atol=1e-6)
    assert abs(dense[0]) > 1e-3
