"""Learnt weightings and a task absent from a step: not started yet (``task_start_steps``), or
without a labelled row of nonzero weight in the batch. Its state must not drift meanwhile."""

import numpy as np
import pytest

from conftest import BCE, click_data, two_tower_model
from mtl_keras import losses
from mtl_keras.backend import keras


def unlabelled(y, task, rows=slice(None)):
    y = {t: v.copy() for t, v in y.items()}
    y[task][rows] = np.nan
    return y


@pytest.mark.parametrize("method, state", [(losses.UncertaintyWeighting, "log_variances"),
                                           (losses.IMTLLossScaling, "log_scales")])
@pytest.mark.parametrize("absence", ["not_started", "no_labels", "zero_weights"])
def test_a_tasks_own_regularization_waits_for_the_task(method, state, absence):
    # Uncertainty's s_t / 2 and IMTL-L's -s_t move s_t by themselves: while the task has no loss
    # they would drift it (-0.05 and +0.1 a step here) and the task would join at e^2 or e^4
    # times its due weight. Mutation caught: the terms summed over every task, present or not.
    x, y = click_data(n=64)
    model = two_tower_model()
    options = dict(task_start_steps={"cvr": 10}) if absence == "not_started" else {}
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, task_weighting=method(), **options)
    weights = {"ctr": np.ones(64, "float32"), "cvr": np.zeros(64, "float32")} if absence == "zero_weights" else None
    model.fit(x, unlabelled(y, "cvr") if absence == "no_labels" else y, sample_weight=weights,
              epochs=2, batch_size=16, verbose=0)  # 8 steps
    values = np.array(getattr(model.training_state.weighting, state))
    assert values[1] == 0.0
    assert abs(values[0]) > 1e-3  # the present task's moves


def test_dwa_with_an_epoch_without_a_tasks_labels_keeps_finite_weights():
    # The task's epoch average is 0 that epoch: its ratio two epochs on is 0 / 0. Mutation caught:
    # the plain division (every weight NaN, the loss NaN, no variable moving again).
    x, y = click_data(n=64)
    model = two_tower_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, task_weighting="dwa")
    model.fit(x, unlabelled(y, "cvr"), epochs=2, batch_size=16, verbose=0)
    before = [np.array(v) for v in model.trainable_variables]
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and np.all(np.isfinite(history["cvr_weight"]))
    assert np.all(np.isfinite(np.array(model.training_state.weighting.weights(None))))
    assert any(not np.allclose(np.array(v), b) for v, b in zip(model.trainable_variables, before))


@pytest.mark.parametrize("method, state", [("gradnorm", "initial_losses"), ("excess_mtl", "_initial")])
def test_a_tasks_reference_comes_from_its_first_labelled_batch(method, state):
    # GradNorm's L_i(0) and ExcessMTL's first excess, fixed on a batch without task i's labels,
    # would be 0, and the ratio to them (divide_no_nan) 0 for good: GradNorm pushes the task's
    # weight down every step, ExcessMTL never moves it. Mutation caught: step 0's for every task.
    x, y = click_data(n=64)
    model = two_tower_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, task_weighting=method)
    model.fit(x, unlabelled(y, "cvr", slice(0, 16)), epochs=1, batch_size=16, shuffle=False, verbose=0)
    reference = np.array(getattr(model.training_state.weighting, state))
    assert np.all(reference > 1e-6), reference


@pytest.mark.parametrize("method", ["gls", "famo"])
def test_a_task_without_labels_leaves_the_others_their_weight(method):
    # GLS's and FAMO's weights go as 1 / L_t: a task whose batch has no labels (L_t = 0) took
    # every weight (the others' fell to 1e-4 and 1e-8, and stopped learning). Left out, the one
    # labelled task has the whole weight. Mutation caught: the zero loss clamped like any other.
    x, y = click_data(n=64)
    model = two_tower_model()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=BCE, task_weighting=method)
    history = model.fit(x, unlabelled(y, "cvr"), epochs=2, batch_size=16, verbose=0).history
    np.testing.assert_allclose(history["ctr_weight"], [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(history["cvr_weight"], [0.0, 0.0], atol=1e-7)
    if method == "famo":  # 8 Adam steps of 0.025 at most: no swing from a log epsilon
        assert np.abs(np.array(model.training_state.weighting.logits)).max() < 0.2
