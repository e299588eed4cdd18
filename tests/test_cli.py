from mtl_keras import cli


def test_demo_trains_both_models_and_prints_the_table(tmp_path, capsys):
    code = cli.main(["demo", "--samples", "1500", "--epochs", "2", "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "| model" in out and "| Shared-Bottom" in out and "| MMoE" in out
    assert (tmp_path / "demo_results.json").exists()


def test_demo_ends_with_served_predictions(tmp_path, capsys):
    cli.main(["demo", "--samples", "1000", "--epochs", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "Predict through the tensorflow_serving stubs" in out and "task2:" in out
    assert (tmp_path / "models" / "mmoe" / "1" / "saved_model.pb").exists()
