"""mtl_keras.plots: the PNGs are written and the data drawn is what training logged."""

import numpy as np
import pytest

from mtl_keras import callbacks, datasets, models, plots
from mtl_keras.backend import keras


@pytest.fixture(scope="module")
def trained():
    x, y = datasets.synthetic_tasks(512, 0.5, dim=8, seed=0)
    model = models.mmoe(keras.Input((8,), name="features"), ["task1", "task2"], num_experts=3,
                        expert_units=(4,), tower_units=(4,), task_types="regression")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={"task1": "mse", "task2": "mse"},
                  task_weighting="uncertainty", gradient_projection="pcgrad")
    log = plots.BatchLog(every=2)
    usage = callbacks.ExpertUsage(x[:64])
    history = model.fit(x, y, validation_data=(x[:128], {t: v[:128] for t, v in y.items()}), epochs=3,
                        batch_size=64, verbose=0, callbacks=[log, usage])
    return model, history, log, usage


def _png(path):
    import matplotlib.image

    image = matplotlib.image.imread(str(path))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert np.std(image) > 0.01  # not a blank canvas


def test_batch_log_records_every_n_steps(trained):
    _, _, log, _ = trained
    steps = [s for s, _ in log.series["task1_weight"]]
    assert steps == list(range(2, 8 * 3 + 1, 2))  # 8 steps an epoch, 3 epochs, every 2nd


def test_task_weights_plot_has_the_logged_weights(trained, tmp_path):
    _, history, log, _ = trained
    data = plots.task_weights(log, tmp_path / "w.png")
    assert set(data) == {"task1", "task2"}
    for steps, weights in data.values():
        assert len(steps) == len(weights) == 12 and np.all(weights > 0) and np.all(np.isfinite(weights))
    _png(tmp_path / "w.png")
    by_epoch = plots.task_weights(history, tmp_path / "we.png")  # a History works too: x = epochs 1..3
    np.testing.assert_array_equal(by_epoch["task1"][0], [1, 2, 3])
    np.testing.assert_allclose(by_epoch["task1"][1], history.history["task1_weight"])


def test_gradient_cosine_plot_is_a_cosine(trained, tmp_path):
    _, _, log, _ = trained
    data = plots.gradient_cosine(log, tmp_path / "c.png")
    assert list(data) == ["task1__task2"]
    cosine = data["task1__task2"][1]
    assert np.all(cosine >= -1.0 - 1e-6) and np.all(cosine <= 1.0 + 1e-6)
    _png(tmp_path / "c.png")


def test_validation_curves_per_task_and_run(trained, tmp_path):
    _, history, _, _ = trained
    other = {k: list(np.asarray(v) * 1.1) for k, v in history.history.items()}
    data = plots.validation_curves({"a": history, "b": other}, tmp_path / "v.png")
    assert set(data) == {"task1", "task2"}
    assert set(data["task1"]["loss"]) == {"a", "b"}
    np.testing.assert_allclose(data["task1"]["loss"]["a"][1], history.history["val_task1_loss"])
    assert "weight" not in data["task1"]
    _png(tmp_path / "v.png")


def test_expert_usage_heatmap_per_gating_layer(trained, tmp_path):
    model, _, _, usage = trained
    written = plots.expert_usage(usage, tmp_path)
    assert [p.split("/")[-1] for p in written] == ["expert_usage_mmoe.png"]
    matrix = next(iter(written.values()))
    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)  # softmax gates
    _png(next(iter(written)))
    again = plots.expert_usage(callbacks.expert_usage(model, _x()), tmp_path, prefix="now")
    assert list(again)[0].endswith("now_mmoe.png")


def _x():
    return datasets.synthetic_tasks(64, 0.5, dim=8, seed=0)[0]


def test_missing_logs_raise_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="grad_cosine"):
        plots.gradient_cosine({"loss": [1.0, 0.5]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="_weight"):
        plots.task_weights({"loss": [1.0, 0.5]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="validation"):
        plots.validation_curves({"run": {"loss": [1.0]}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="every"):
        plots.BatchLog(every=0)
