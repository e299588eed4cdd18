import numpy as np

from conftest import BCE, click_data, softmax
from mtl_keras import callbacks, models
from mtl_keras.backend import keras


def test_expert_usage_records_the_mean_gate_per_task_and_expert(tmp_path):
    model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=4)
    model.compile(optimizer="adam", loss=BCE)
    x, y = click_data(n=64)
    usage = callbacks.ExpertUsage(x[:32], directory=str(tmp_path))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[usage])
    (name,) = usage.history
    assert name == "mmoe" and [epoch for epoch, _ in usage.history[name]] == [0, 1]
    matrix = usage.history[name][-1][1]
    layer = model.get_layer("mmoe")
    want = np.stack(
        [softmax(x[:32] @ np.array(k) + np.array(b)).mean(0) for k, b in zip(layer.gate_kernels, layer.gate_biases)]
    )
    np.testing.assert_allclose(matrix, want, atol=1e-5)
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-5)
    png = tmp_path / "mmoe_epoch002.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_expert_usage_of_ple_levels():
    model = models.ple(keras.Input((6,), name="x"), ["ctr", "cvr"], num_levels=2, num_task_experts=2, num_shared_experts=1)
    x, _ = click_data(n=16)
    usage = callbacks.expert_usage(model, x)
    assert sorted(usage) == ["ple/level_0", "ple/level_1"]
    matrix, labels = usage["ple/level_0"]
    assert matrix.shape == (3, 5) and labels == ["ctr", "cvr", "shared"]
    assert usage["ple/level_1"][0].shape == (2, 5)
    np.testing.assert_allclose(matrix.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(matrix[0, 2:4], 0.0)
