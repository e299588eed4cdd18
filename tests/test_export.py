"""Multi-head SavedModels for TF Serving."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import EXPORT_ROWS as X
from conftest import as_feed, build
from mtl_keras import MultiTaskModel, export, models
from mtl_keras.backend import keras, tf
from mtl_keras.layers import HardConcreteRouter

def serialized_examples(feed):
    rows = []
    for i in range(len(next(iter(feed.values())))):
        feature = {}
        for name, value in feed.items():
            flat = np.ravel(value[i])
            if value.dtype.kind == "f":
                feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=flat))
            else:
                feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=flat))
        rows.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return tf.constant(rows)


@pytest.mark.parametrize("name", ["shared_bottom", "mmoe", "ple", "snr", "star", "esmm", "cross_stitch", "custom"])
def test_every_builder_exports_its_heads(name, tmp_path):
    model, data = build(name)
    keras_out = model.predict(data, verbose=0)
    path = export.export_saved_model(model, str(tmp_path / "ranker"))
    assert path == str(tmp_path / "ranker" / "1")
    loaded = tf.saved_model.load(path)
    tasks = list(model.task_names)
    assert set(loaded.signatures) == {"serving_default", "predict_examples", *tasks}
    feed = {k: tf.constant(v) for k, v in as_feed(data).items()}
    first = loaded.signatures["serving_default"](**feed)
    second = loaded.signatures["serving_default"](**feed)
    assert sorted(first) == sorted(tasks)
    for task in tasks:
        np.testing.assert_allclose(first[task].numpy(), keras_out[task], atol=1e-5)
        np.testing.assert_array_equal(first[task].numpy(), second[task].numpy())
        single = loaded.signatures[task](**feed)
        assert list(single) == [task]
        np.testing.assert_allclose(single[task].numpy(), keras_out[task], atol=1e-5)
    from_examples = loaded.signatures["predict_examples"](examples=serialized_examples(as_feed(data)))
    for task in tasks:
        np.testing.assert_allclose(from_examples[task].numpy(), first[task].numpy(), atol=1e-6)
    # The batch dimension is dynamic and every output is batch-major.
    empty = loaded.signatures["serving_default"](**{k: v[:0] for k, v in feed.items()})
    assert all(v.shape[0] == 0 for v in empty.values())


def test_saved_model_cli_shows_and_runs_the_signatures(tmp_path):
    model, data = build("mmoe")
    path = export.export_saved_model(model, str(tmp_path / "m"))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True, check=True).stdout
    for signature in ("serving_default", "ctr", "cvr", "predict_examples"):
        assert f"signature_def['{signature}']" in shown
    assert "inputs['features']" in shown and "outputs['ctr']" in shown and "outputs['cvr']" in shown
    assert "output_0" not in shown
    np.save(tmp_path / "x.npy", data)
    out_dir = tmp_path / "out"
    subprocess.run(
        [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"features={tmp_path / 'x.npy'}", "--outdir", str(out_dir)],
        capture_output=True, text=True, check=True,
    )
    keras_out = model.predict(data, verbose=0)
    for task in ("ctr", "cvr"):
        np.testing.assert_allclose(np.load(out_dir / f"{task}.npy"), keras_out[task], atol=1e-5)


def count_matmuls(path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        proto.ParseFromString(handle.read())
    library = proto.meta_graphs[0].graph_def.library
    return sum(node.op in ("MatMul", "BatchMatMulV2", "Einsum") for f in library.function for node in f.node_def)


def test_closed_snr_routes_are_pruned_from_the_graph(tmp_path):
    model = models.snr(keras.Input((6,), name="features"), ["ctr", "cvr"], num_subnetworks=(4, 4))
    open_path = export.export_saved_model(model, str(tmp_path / "snr"))
    for router in (l for l in model.layers if isinstance(l, HardConcreteRouter)):
        alpha = np.full(router.log_alpha.shape, 3.0, "float32")
        alpha[:, ::2] = -30.0  # half of the routes: z_hat == 0
        router.log_alpha.assign(alpha)
    pruned_path = export.export_saved_model(model, str(tmp_path / "snr"))
    assert count_matmuls(pruned_path) < count_matmuls(open_path)
    out = tf.saved_model.load(pruned_path).signatures["serving_default"](features=tf.constant(X))
    keras_out = model.predict(X, verbose=0)
    for task in ("ctr", "cvr"):
        np.testing.assert_allclose(out[task].numpy(), keras_out[task], atol=1e-5)
    assert not any(r.frozen_gates is not None for r in model.layers if isinstance(r, HardConcreteRouter))


def test_versions_and_warmup_records(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    model, _ = build("mmoe")
    base = str(tmp_path / "ranker")
    os.makedirs(os.path.join(base, "7"))
    os.makedirs(os.path.join(base, "notes"))
    assert export.export_saved_model(model, base).endswith(os.sep + "8")
    path = export.export_saved_model(model, base, version=3, warmup_records=4)
    records = list(tf.data.TFRecordDataset(os.path.join(path, export.WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 4
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    assert list(log.predict_log.request.inputs) == ["features"]
    assert tf.make_ndarray(log.predict_log.request.inputs["features"]).shape == (2, 6)


def listing(base):
    return sorted(os.listdir(base)) if os.path.exists(base) else []


class TestBadInput:
    def test_existing_and_bad_versions_leave_nothing_behind(self, tmp_path):
        model, _ = build("mmoe")
        base = str(tmp_path / "m")
        export.export_saved_model(model, base, version=1)
        with pytest.raises(FileExistsError, match="`version` 1 already exists"):
            export.export_saved_model(model, base, version=1)
        for bad in ("2", 2.5, -1, True):
            with pytest.raises(ValueError, match="`version` must be a non-negative integer"):
                export.export_saved_model(model, base, version=bad)
        assert listing(base) == ["1"]

    def test_unnamed_inputs(self, tmp_path):
        x = keras.Input((4,))
        model = MultiTaskModel(x, {"a": keras.layers.Dense(1, name="a")(x)})
        with pytest.raises(ValueError, match="unnamed input"):
            export.export_saved_model(model, str(tmp_path / "m"))
        assert listing(str(tmp_path / "m")) == []

    def test_unbuilt_model(self, tmp_path):
        with pytest.raises(ValueError, match="not built"):
            export.export_saved_model(keras.Sequential([keras.layers.Dense(1)]), str(tmp_path / "m"))
        with pytest.raises(ValueError, match="must be a Keras model"):
            export.export_saved_model(object(), str(tmp_path / "m"))

    def test_a_killed_export_leaves_no_version_folder(self, tmp_path):
        base = str(tmp_path / "m")
        script = textwrap.dedent(
            f"""
            import os
            import tensorflow as tf
            from mtl_keras import export, models
            from mtl_keras.backend import keras
            model = models.mmoe(keras.Input((6,), name="features"), ["ctr", "cvr"])
            real_save = tf.saved_model.save
            def save_then_die(*args, **kwargs):
                real_save(*args, **kwargs)
                os._exit(9)  # killed after writing, before the rename
            tf.saved_model.save = save_then_die
            export.export_saved_model(model, {base!r})
            """
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert result.returncode == 9, result.stderr[-2000:]
        assert listing(base) and not any(name.isdigit() for name in listing(base))
