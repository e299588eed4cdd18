"""The quality benchmarks' pieces: AUC, the paper's model sizes, resumable tables and the chart."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from mtl_keras.backend import keras

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


census = _load("quality_census")
synthetic = _load("quality_synthetic")


def test_synthetic_models_have_the_papers_sizes():
    inputs = lambda: keras.Input((100,), name="features")  # noqa: E731
    sizes = {name: synthetic.build(name, inputs(), ["task1", "task2"]).count_params() for name in synthetic.MODELS}
    # Shared-Bottom: 100*113+113, towers 2*(113*8+8+8+1); MMoE: 8 experts of 16, 2 gates, towers of 8.
    assert sizes["Shared-Bottom"] == 100 * 113 + 113 + 2 * (113 * 8 + 8 + 8 + 1)
    assert sizes["MMoE"] == 8 * (100 * 16 + 16) + 2 * (100 * 8 + 8) + 2 * (16 * 8 + 8 + 8 + 1)
    assert sizes["OMoE"] == sizes["MMoE"] - (100 * 8 + 8)


def test_synthetic_table_and_chart_from_run_files(tmp_path):
    for seed in (0, 1):
        for p in (0.5, 1.0):
            for model, base in (("Shared-Bottom", 0.05), ("MMoE", 0.03)):
                record = {"model": model, "correlation": p, "seed": seed, "params": 1,
                          "mse": {"task1": base + 0.01 * (p == 0.5) + seed * 2e-3, "task2": base},
                          "epochs": 10, "samples": 100000}
                (tmp_path / f"p{p}_{model}_s{seed}.json").write_text(json.dumps(record))
    cells = synthetic.summarize(str(tmp_path))
    assert cells[(0.5, "MMoE")]["seeds"] == [0, 1]
    table = synthetic.format_table(cells)
    assert "| MMoE | 1 | 0.0305 ± 0.0005 (2) | 0.0355 ± 0.0005 (2) | +0.0050 |" in table
    synthetic.write_chart(cells, str(tmp_path / "chart.png"))
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_census_table_from_run_files(tmp_path):
    for seed, (income, marital) in enumerate([(0.946, 0.994), (0.948, 0.995)]):
        for config, shift in (("mmoe", 0.0), ("mmoe+pcgrad", 0.001)):
            record = {"group": 1, "config": config, "seed": seed, "max_epochs": 8,
                      "auc": {"income": income + shift, "marital": marital},
                      "test_log_loss": {"income": 0.3 + 20 * shift + 0.01 * seed, "marital": 0.1}}
            (tmp_path / f"g1_{config}_s{seed}.json").write_text(json.dumps(record))
    table = census.format_table(census.summarize(str(tmp_path)))
    assert "| mmoe | 2 | 0.9470 ± 0.0010 | 0.9945 ± 0.0005 | 0.9410 | 0.9926 | 0.9446 | 0.9932 |" in table
    assert "| mmoe+pcgrad | 2 | 0.9480 ± 0.0010 (+0.0010) |" in table
    # Summed test log losses over plain MMoE's, means over the seeds: 0.425 / 0.405.
    assert [line for line in table.splitlines() if line.startswith("| mmoe+pcgrad")][0].endswith("| 1.049 |")
