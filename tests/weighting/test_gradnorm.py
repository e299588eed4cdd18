"""GradNorm's weight update inside the train step against the paper's rule in NumPy.

Chen et al. 2018 (PAPERS.md): G_i = ||grad_W w_i L_i|| on the last shared layer W,
r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)), L_grad = sum_i |G_i - mean(G) r_i^alpha| with
the target held constant, one step of size lr on w, then w renormalised to sum to T.
"""

import numpy as np

from mtl_keras import losses, models
from mtl_keras.backend import keras, tf

TASKS = ("ctr", "cvr")


def np_gradnorm_step(w, norms, task_losses, initial, alpha, lr):
    g = w * norms
    ratios = task_losses / initial
    target = g.mean() * (ratios / ratios.mean()) ** alpha
    # d L_grad / d w_i = sign(G_i - target_i) * ||grad_W L_i||
    w = np.maximum(w - lr * np.sign(g - target) * norms, 1e-6)
    return w * len(w) / w.sum()


def test_gradnorm_update_follows_the_papers_rule_over_steps():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"),
         "cvr": (rng.random((32, 1)) < 0.5).astype("float32")}  # a task that learns slower
    keras.utils.set_random_seed(11)
    model = models.mmoe(keras.Input((6,), name="x"), list(TASKS), num_experts=2, expert_units=(4,), tower_units=(4,))
    weighting = losses.GradNorm(alpha=1.5, learning_rate=1.0)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss={t: "binary_crossentropy" for t in TASKS},
                  task_weighting=weighting, jit_compile=False)
    bce = keras.losses.BinaryCrossentropy()
    w, initial = np.ones(2), None
    for step in range(3):
        # Independent of the step: each task's mean loss and its gradient on W, from the current weights.
        with tf.GradientTape(persistent=True) as tape:
            pred = model(x, training=True)
            task_losses = [bce(y[t], pred[t]) for t in TASKS]
        norms = np.array([np.linalg.norm(np.asarray(tape.gradient(l, weighting.shared_variable), np.float64))
                          for l in task_losses])
        task_losses = np.array([float(l) for l in task_losses])
        initial = task_losses if initial is None else initial
        if step == 1:
            # A state where alpha decides the step: loss ratios L/L(0) of (1.2, 0.8), so r = (1.2, 0.8),
            # and G = (1.25, 0.75) G_bar, between the targets of alpha = 1 (1.2, 0.8) and 1.5 (1.31, 0.72).
            initial = (task_losses / [1.2, 0.8]).astype("float32").astype(np.float64)
            w = np.array([1.25, 0.75]) / norms
            w = (w * 2 / w.sum()).astype("float32").astype(np.float64)
            weighting.initial_losses.assign(initial.astype("float32"))
            weighting.task_weights.assign(w.astype("float32"))
            assert not np.array_equal(np_gradnorm_step(w, norms, task_losses, initial, 1.0, 1.0),
                                      np_gradnorm_step(w, norms, task_losses, initial, 1.5, 1.0))
        w = np_gradnorm_step(w, norms, task_losses, initial, alpha=1.5, lr=1.0)
        model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        np.testing.assert_allclose(np.array(weighting.task_weights), w, rtol=1e-4)
        np.testing.assert_allclose(np.array(weighting.initial_losses), initial, rtol=1e-5)
    assert np.abs(w - 1).max() > 1e-3  # the weights moved
