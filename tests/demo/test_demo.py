"""`mtl-keras demo --quick` end to end: the multi-task model against single-task baselines (who wins, by how
much), early stopping that keeps the best epoch, exit status, PNGs, TensorBoard scalars, served predictions."""

import argparse
import glob
import json
import os
import re
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
    assert (out / "models" / "ranker" / "1" / "saved_model.pb").exists()


def test_demo_compares_the_multi_task_model_with_single_task_baselines(demo_run):
    """The table has the three models; each task's verdict names the winner and the gap, and agrees
    with the table's AUCs."""
    out, done = demo_run
    for name in ("ple_uncertainty+pcgrad", "cvr_alone", "ctr_alone"):
        assert f"| {name}" in done.stdout
    results = json.loads((out / "demo_results.json").read_text())
    rows = {row["model"]: row for row in results["test"]}
    assert rows["cvr_alone"]["ctr AUC"] is None and rows["ctr_alone"]["cvr AUC"] is None
    for task in ("cvr", "ctr"):
        verdict = results["verdicts"][task]
        single = rows[f"{task}_alone"][f"{task} AUC"]
        multi = rows["ple_uncertainty+pcgrad"][f"{task} AUC"]
        assert verdict["gain"] == pytest.approx(multi - single)
        winner = "ple_uncertainty+pcgrad" if multi > single else f"{task}_alone"
        assert verdict["winner"] == (winner if abs(multi - single) >= 0.0005 else "tie")
        line = re.search(rf"  {task} \(.*\): ple_uncertainty\+pcgrad {multi:.4f} vs {task}_alone {single:.4f}: (.*)",
                         done.stdout)
        assert line, done.stdout[-3000:]
        assert line.group(1) == (f"{winner} wins by {abs(multi - single):.4f} AUC" if verdict["winner"] != "tie"
                                 else f"a tie ({multi - single:+.4f} AUC)")
    assert re.search(r"kept the weights of epoch \d of \d \(lowest val_cvr_loss\)", done.stdout)


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    """training.train restores the epoch with the lowest validation cvr loss, not the last one."""
    from mtl_keras.datasets import synthetic_recsys_spec
    from mtl_keras.demo import training

    args = argparse.Namespace(model="mmoe", seed=0, learning_rate=0.05, epochs=6, batch_size=64)
    data = training.load(1500, 100, 50, seed=0)
    run = training.Run("cvr_alone", ["cvr"])
    training.train(run, synthetic_recsys_spec(data["train"][0]), data, args, str(tmp_path))
    losses = run.history["val_cvr_loss"]
    assert len(losses) < args.epochs and run.best_epoch < len(losses)  # stopped early, after a worse epoch
    val_x, val_y = data["validation"]
    kept = run.model.evaluate(val_x, {"cvr": val_y["cvr"]}, batch_size=args.batch_size, return_dict=True,
                              verbose=0)["cvr_loss"]
    assert kept == pytest.approx(min(losses), rel=1e-4)


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
    assert "epoch_cvr_loss" in _scalar_tags(out / "tensorboard" / "cvr_alone" / "train")
