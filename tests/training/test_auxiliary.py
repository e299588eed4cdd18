"""Small self-auxiliary towers: trained with gamma, logged, never predicted."""

import numpy as np
import pytest

from conftest import BCE, click_data, save_and_load, weights_of
from mtl_keras import MultiTaskModel, losses, models
from mtl_keras.backend import keras, tf

BUILDERS = {
    "shared_bottom": models.shared_bottom,
    "mmoe": models.mmoe,
    "ple": models.ple,
}


# PLE's towers come from the same builder code as the others' (models/common.py): a slow case.
@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=[pytest.mark.slow] if name == "ple" else []) for name in sorted(BUILDERS)]
)
def test_auxiliary_heads_train_but_are_not_predicted(name, tmp_path):
    model = BUILDERS[name](keras.Input((6,), name="x"), ["ctr", "cvr"], auxiliary_tower_units=(4,))
    assert model.task_names == ("ctr", "cvr") and model.auxiliary_tasks == ("ctr", "cvr")
    x, y = click_data(n=64)
    assert set(model.predict(x, verbose=0)) == {"ctr", "cvr"}
    assert set(model(x)) == {"ctr", "cvr"}
    assert set(model(x, training=True)) == {"ctr", "cvr", "ctr__aux", "cvr__aux"}
    assert model.get_layer("ctr_aux_tower_0").units == 4
    model.compile(optimizer="adam", loss=BCE)
    history = model.fit(x, y, epochs=2, verbose=0).history
    assert {"ctr_aux_loss", "cvr_aux_loss"} <= set(history)
    loaded = save_and_load(model, tmp_path)
    assert loaded.auxiliary_tasks == ("ctr", "cvr")
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["cvr"], model.predict(x, verbose=0)["cvr"], atol=1e-6)
    assert "ctr_aux_loss" in loaded.fit(x, y, epochs=1, verbose=0).history


def test_the_loss_is_w_times_main_plus_gamma_auxiliary():
    gamma, task_weights = 0.3, {"ctr": 2.0, "cvr": 0.5}
    model = models.shared_bottom(keras.Input((6,), name="x"), ["ctr", "cvr"], bottom_units=(8,), auxiliary_tower_units=(3,))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=BCE, task_weighting=task_weights, auxiliary_loss_weight=gamma)
    x, y = click_data(n=64)
    bce = keras.losses.BinaryCrossentropy()
    start = weights_of(model)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        parts = {t: (bce(y[t], out[t]), bce(y[t], out[t + "__aux"])) for t in task_weights}
        loss = sum(w * (parts[t][0] + gamma * parts[t][1]) for t, w in task_weights.items())
    grads = tape.gradient(loss, model.trainable_variables)
    history = model.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False).history
    for old, grad, var in zip(start, grads, model.trainable_variables):
        np.testing.assert_allclose(np.array(var), old - np.array(grad), atol=1e-5)
    assert history["loss"][0] == pytest.approx(float(loss), abs=1e-5)
    assert history["cvr_aux_loss"][0] == pytest.approx(float(parts["cvr"][1]), abs=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        dict(task_weighting=losses.UncertaintyWeighting()),
        dict(task_weighting=losses.GradNorm()),
        dict(task_weighting=losses.DynamicWeightAverage()),
        dict(gradient_projection=losses.PCGrad()),
        dict(gradient_projection=losses.MGDA(), projection_mode="fast"),
    ],
    ids=["uncertainty", "gradnorm", "dwa", "pcgrad", "mgda_fast"],
)
def test_auxiliary_towers_work_with_every_weighting(options):
    model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=3, auxiliary_tower_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=BCE, **options)
    x, y = click_data(n=128)
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert history["ctr_aux_loss"][-1] < history["ctr_aux_loss"][0]


class SubBatchSum(losses.GradientProjection):
    """The sum over tasks of the mean over two sub-batches: the batch's plain gradient."""

    needs = "sub_batches"
    num_sub_batches = 2

    def combine_sub_batches(self, parts, task_losses):
        return tf.reduce_sum(tf.reduce_mean(tf.cast(parts, tf.float32), axis=0), axis=0)


def test_auxiliary_losses_reach_the_shared_variables_through_sub_batch_projections():
    # Where the projection takes per-task gradients on sub-batches (SDMGrad, MoDo), each
    # sub-batch's task loss carries its auxiliary head's term as the batch's does: the plain sum
    # over sub-batches then trains as no projection. Mutation caught: sub-batch losses without
    # gamma L_t^aux leave the shared bottom 0.17 off after three steps.
    x, y = click_data(n=96)

    def trained(options):
        keras.utils.set_random_seed(4)
        model = models.shared_bottom(keras.Input((6,), name="x"), ["ctr", "cvr"], auxiliary_tower_units=(4,))
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=BCE, auxiliary_loss_weight=2.0,
                      jit_compile=False, **options)
        model.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
        return weights_of(model)

    reference = trained({})
    got = trained(dict(gradient_projection=SubBatchSum()))
    for a, b in zip(reference, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_bad_auxiliary_arguments():
    x = keras.Input((3,), name="x")
    head = keras.layers.Dense(1, name="a")(x)
    with pytest.raises(ValueError, match=r"`auxiliary_outputs` names unknown task\(s\) \['b'\]"):
        MultiTaskModel(x, {"a": head}, auxiliary_outputs={"b": keras.layers.Dense(1)(x)})
    model = models.mmoe(keras.Input((4,), name="x"), ["ctr", "cvr"], auxiliary_tower_units=(2,))
    with pytest.raises(ValueError, match="auxiliary_loss_weight"):
        model.compile(loss=BCE, auxiliary_loss_weight=-0.1)
    with pytest.raises(ValueError, match="auxiliary_tower_units"):
        models.mmoe(keras.Input((4,), name="x"), ["ctr", "cvr"], auxiliary_tower_units=(0,))


def test_val_loss_is_assembled_as_loss():
    """With a frozen model, evaluate's loss on a batch equals fit's loss on it (auxiliary terms
    and the weighting's regularization in both)."""
    model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], auxiliary_tower_units=(3,))
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=BCE, task_weighting="uncertainty")
    x, y = click_data(n=64)
    trained = model.fit(x, y, batch_size=64, epochs=1, verbose=0).history
    evaluated = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert evaluated["ctr_aux_loss"] > 0
    # Task weights are training-only logs (evaluate leaves them out); the loss assembles with them.
    assert "cvr_weight" not in evaluated
    for key in ("loss", "ctr_loss", "ctr_aux_loss"):
        np.testing.assert_allclose(evaluated[key], trained[key][0], rtol=1e-6)
