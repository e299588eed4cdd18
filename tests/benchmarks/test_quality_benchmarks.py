"""The quality benchmarks' pieces: AUC, the paper's model sizes, every configuration's builder,
resumable tables and the chart."""

import importlib.util
import json
import pathlib
import types

import numpy as np
import pytest

from mtl_keras import datasets
from mtl_keras import features as F
from mtl_keras.backend import all_layers, keras

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


census = _load("quality_census")
synthetic = _load("quality_synthetic")
recsys = _load("architectures_recsys")

# What each configuration name must build: a layer class or model name only its builder makes.
# The DSelect-k configurations are told from the softmax ones by their DSelectKGate.
BUILT_BY = {
    "shared_bottom": "shared_bottom", "cross_stitch": "CrossStitch", "omoe": "omoe", "mmoe": "mmoe",
    "mmoe_dselect_k": "ExpertGate", "ple": "CGCLayer", "ple_dselect_k": "CGCLayer", "snr": "HardConcreteRouter",
    "nddr": "NDDR", "mtan": "MTANAttention", "adashare": "AdaShareBlocks",
    "learning_to_branch": "BranchingLayers", "mtl_nas": "SearchedFusion", "aitm": "InformationTransfer",
    "dbmtl": "dbmtl", "esmm": "esmm", "pepnet": "PPNet", "nddr_no_bn": "NDDR", "mtl_nas_no_bn": "SearchedFusion",
}


def _built(model):
    """The model's name, its layers' class names and its layers' names."""
    layers = all_layers(model)
    return {model.name} | {type(layer).__name__ for layer in layers}, {layer.name for layer in layers}


def _check_builder(config, model):
    kinds, _ = _built(model)
    assert BUILT_BY[config] in kinds, (config, sorted(kinds))
    assert ("DSelectKGate" in kinds) == config.endswith("_dselect_k"), (config, sorted(kinds))


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
            for model, base in (("Shared-Bottom", 0.05), ("MMoE", 0.03), ("MMoE+rlw", 0.033)):
                record = {"model": model, "correlation": p, "seed": seed, "params": 1,
                          "mse": {"task1": base + 0.01 * (p == 0.5) + seed * 2e-3, "task2": base},
                          "epochs": 10, "samples": 100000}
                (tmp_path / f"p{p}_{model}_s{seed}.json").write_text(json.dumps(record))
    cells = synthetic.summarize(str(tmp_path))
    assert cells[(0.5, "MMoE")]["seeds"] == [0, 1]
    table = synthetic.format_table(cells)
    assert "| MMoE | 1 | 0.0305 ± 0.0005 (2) | 0.0355 ± 0.0005 (2) | +0.0050 |" in table
    # A weighting's row: its MSE over plain MMoE's paired by seed; p = 1.0, the first column.
    rlw = next(line for line in table.splitlines() if line.startswith("| MMoE+rlw"))
    ratios = [(0.066 + seed * 2e-3) / (0.06 + seed * 2e-3) for seed in (0, 1)]
    assert rlw.split(" | ")[1] == f"{np.mean(ratios):.3f} ± {np.std(ratios):.3f} (1.10-1.10), 2/2", rlw
    synthetic.write_chart(cells, str(tmp_path / "chart.png"))
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_synthetic_until_converged_stops_on_the_mean_of_the_unweighted_task_losses():
    """--until-converged watches the tasks' own validation losses, not the weighted loss a
    weighting optimises (which STCH, GLS or IMTL-L can drive down while the MSEs rise), and
    keeps the best epoch's weights. Mutation caught: monitoring "val_loss"."""
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.stop_training = False  # what fit sets before the first epoch
    best = [w.copy() for w in model.get_weights()]
    callbacks = synthetic.converged_callbacks(["task1", "task2"], patience=1)
    for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
    epochs = [{"loss": 1.0, "val_loss": 3.0 - epoch, "val_task1_loss": 1.0 + epoch, "val_task2_loss": 2.0 + epoch}
              for epoch in range(5)]
    for epoch, logs in enumerate(epochs):
        if epoch:
            model.set_weights([w + epoch for w in best])
        for callback in callbacks:
            callback.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    for callback in callbacks:
        callback.on_train_end()
    assert model.stop_training and epoch == 1
    assert epochs[0]["val_mean_task_loss"] == 1.5
    np.testing.assert_allclose(model.get_weights()[1], best[1])


@pytest.mark.parametrize("config", ["single_task", "mmoe+gls"])
def test_census_stops_on_the_mean_of_the_unweighted_task_losses(config, monkeypatch):
    """Every census configuration early-stops as the synthetic one does, on the tasks' own
    validation losses. Mutation caught: EarlyStopping("val_loss") in train_one."""
    rng = np.random.default_rng(0)

    def split(rows):
        x = rng.normal(size=(rows, 5)).astype("float32")
        return types.SimpleNamespace(x={"features": x}, y={"income": (x[:, :1] > 0).astype("float32"),
                                                            "marital": (x[:, 1:2] > 0).astype("float32")})

    data = types.SimpleNamespace(train=split(64), validation=split(32), test=split(32))
    watched = []

    def spy(tasks, patience):
        watched.append(list(tasks))
        return synthetic.converged_callbacks(tasks, patience)

    monkeypatch.setattr(census, "converged_callbacks", spy)
    census.train_one(config, data, ["income", "marital"], seed=0, epochs=1, batch_size=32, learning_rate=1e-3)
    assert watched == ([["income"], ["marital"]] if config == "single_task" else [["income", "marital"]])


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
    assert "pepnet is not in this table: its gates read prior" in table


def test_census_configurations_build_their_architectures():
    tasks = ["income", "marital"]
    x = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    built = {}
    for config in census.ARCHITECTURES[1:]:  # single_task: shared_bottom per task
        model = built[config] = census.build(config, keras.Input((6,), name="features"), tasks, steps_per_epoch=2)
        _check_builder(config, model)
        predicted = model(x, training=False)
        assert sorted(predicted) == tasks and all(p.shape == (3, 1) for p in predicted.values()), config
    # MMoE with each weighting and projection: the method's string id compiles into the model.
    for config in census.CONFIGS:
        if "+" in config:
            census.compile_config(built["mmoe"], config, tasks, 1e-3)
            compiled = built["mmoe"].get_compile_config()
            if config.split("+")[1] in census.WEIGHTINGS:
                assert compiled["task_weighting"]["class_name"] != "StaticWeighting", config
            else:
                assert compiled["gradient_projection"] is not None, config
    # AITM's funnel on census: marital, then income (the docstring's choice).
    _, names = _built(built["aitm"])
    assert "income_ait" in names and "marital_ait" not in names
    assert "pepnet" in census.LEFT_OUT and "pepnet" not in census.CONFIGS
    # The ablations drop the fusions' batch norm and nothing else.
    for config in census.WITHOUT_BATCH_NORM:
        base = config.removesuffix("_no_bn")
        assert "BatchNormalization" in _built(built[base])[0], base
        assert "BatchNormalization" not in _built(built[config])[0], config


def test_recsys_configurations_build_their_architectures():
    x, y = datasets.synthetic_recsys(64, seed=0, num_users=20, num_items=10)
    spec = datasets.synthetic_recsys_spec(x)
    rows = {k: v[:3] for k, v in x.items()}
    assert set(recsys.CONFIGS) - set(census.CONFIGS) == {"esmm", "pepnet"}
    built = {}
    for config in recsys.CONFIGS:
        model = built[config] = recsys.build(config, spec, steps_per_epoch=2)
        _check_builder(config, model)
        predicted = model(F.prepare_inputs(model, rows), training=False)
        # Every trained head is an output with a label; every model gives ctr and a conversion rate.
        assert set(recsys.losses(config)) <= set(predicted) and set(recsys.losses(config)) <= set(y), config
        assert np.asarray(predicted["ctr"]).shape == (3, 1) and recsys.conversion(predicted).shape == (3,), config
    _, names = _built(built["aitm"])
    assert "ctcvr_ait" in names  # the funnel: click, then click and conversion
    _, names = _built(built["pepnet"])
    assert {"user_id_prior_embedding", "item_id_prior_embedding"} <= names


def test_recsys_conversion_of_the_impression_space_models():
    assert recsys.losses("aitm") == {"ctr": "binary_crossentropy", "ctcvr": "binary_crossentropy"}
    assert recsys.losses("esmm")["cvr"] is None
    assert recsys.losses("mmoe") == {"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"}
    # P(conversion | click) = P(click and conversion) / P(click).
    np.testing.assert_allclose(recsys.conversion({"ctr": [[0.5], [0.2]], "ctcvr": [[0.1], [0.1]]}), [0.2, 0.5])
    np.testing.assert_allclose(recsys.conversion({"ctr": [[0.5]], "cvr": [[0.3]], "ctcvr": [[0.15]]}), [0.3])


def test_recsys_runs_resume_from_their_files_and_make_the_table(tmp_path, monkeypatch, capsys):
    argv = ["--configs", "esmm", "--seeds", "0", "--samples", "300", "--epochs", "1", "--users", "30",
            "--items", "20", "--out-dir", str(tmp_path), "--out", str(tmp_path / "all.json")]
    recsys.main(argv)
    row = json.loads((tmp_path / "esmm_s0.json").read_text())
    assert row["settings"]["samples"] == 300 and 0 <= row["cvr_auc_clicked"] <= 1
    monkeypatch.setattr(recsys, "run", lambda *a, **k: pytest.fail("a finished run ran again"))
    recsys.main(argv)
    assert len(json.loads((tmp_path / "all.json").read_text())["rows"]) == 1
    for seed, (ctr, cvr) in enumerate([(0.70, 0.61), (0.72, 0.65)]):
        record = dict(row, config="aitm", seed=seed, ctr_auc=ctr, cvr_auc_clicked=cvr, params=100)
        (tmp_path / f"aitm_s{seed}.json").write_text(json.dumps(record))
    table = recsys.format_table(recsys.load_rows(str(tmp_path)))
    assert "| aitm | 2 | 0.7100 ± 0.0100 | 0.6300 ± 0.0200 | 100 |" in table
    lines = table.splitlines()
    assert lines.index(next(line for line in lines if line.startswith("| esmm"))) < lines.index(
        next(line for line in lines if line.startswith("| aitm")))  # CONFIGS' order
