"""The point of sharing, reduced from benchmarks/recsys_sharing.py to one seed: on synthetic_recsys,
MMoE with shared sparse embeddings beats the cvr-only model on conversion AUC (clicked test rows)."""

import argparse
import importlib.util
import pathlib

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "recsys_sharing.py"


def benchmark():
    spec = importlib.util.spec_from_file_location("recsys_sharing", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shared_embeddings_beat_the_single_task_model_on_conversions():
    module = benchmark()
    args = argparse.Namespace(samples=40000, epochs=2, users=1000, items=500)
    shared, ceiling = module.run(0, args, ["ctr", "cvr"])
    single, _ = module.run(0, args, ["cvr"])
    # Measured (seed 0): 0.685 vs 0.669 (Keras 3), 0.687 vs 0.666 (tf_keras); ceiling 0.87.
    assert shared > single + 0.005, (shared, single)
    assert shared < ceiling
