"""`mtl-keras demo --quick` end to end: exit status, PNGs, TensorBoard scalars, served predictions, no noise."""

import glob
import os
import subprocess
import sys

import pytest

SCRIPT = os.path.join(os.path.dirname(sys.executable), "mtl-keras")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    command = [SCRIPT] if os.path.exists(SCRIPT) else [sys.executable, "-m", "mtl_keras.cli"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user would run it
    done = subprocess.run(command + ["demo", "--quick", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    return out, done


def test_demo_exits_zero_with_equal_served_predictions(demo_run):
    out, done = demo_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[10/10] Shut the server down" in done.stdout
    assert "served predictions equal to the in-process ones" in done.stdout
    for channel in ("gRPC", "REST"):
        assert f"ctr: {channel}" in done.stdout and f"cvr: {channel}" in done.stdout
    assert "| ple_uncertainty+pcgrad" in done.stdout and "| ple_equal" in done.stdout
    assert (out / "models" / "ranker" / "1" / "saved_model.pb").exists()


def test_demo_prints_no_tensorflow_start_up_noise(demo_run):
    _, done = demo_run
    for noise in ("cuInit", "cudart_stub", "oneDNN", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in done.stdout + done.stderr


def test_demo_writes_the_plots(demo_run):
    out, _ = demo_run
    expected = ["task_weights.png", "gradient_cosine.png", "validation_curves.png",
                "expert_usage_cgc_0.png", "expert_usage_cgc_1.png"]
    for name in expected:
        path = out / name
        assert path.exists() and path.stat().st_size > 5000, name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _scalar_tags(directory):
    import tensorflow as tf

    tags = set()
    for path in glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_tensorboard_event_files_hold_the_per_task_scalars(demo_run):
    out, _ = demo_run
    train = _scalar_tags(out / "tensorboard" / "ple_uncertainty+pcgrad" / "train")
    for tag in ("epoch_loss", "epoch_ctr_loss", "epoch_cvr_loss", "epoch_ctr_weight", "epoch_cvr_weight",
                "epoch_grad_cosine/ctr__cvr", "epoch_ctr_auc"):
        assert tag in train, sorted(train)
    validation = _scalar_tags(out / "tensorboard" / "ple_uncertainty+pcgrad" / "validation")
    assert {"epoch_ctr_loss", "epoch_cvr_loss"} <= validation, sorted(validation)
    assert "epoch_ctr_loss" in _scalar_tags(out / "tensorboard" / "ple_equal" / "train")
