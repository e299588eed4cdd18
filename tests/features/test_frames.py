"""pandas DataFrames (and dicts of Series) through FeatureSpec.adapt, fit / evaluate / predict, the export's
predict_examples and census_income: object, string, categorical and nullable columns; a missing value is the
feature's OOV row (ids) or its default (numbers), as features.frames documents."""

import gzip

import numpy as np
import pandas as pd
import pytest

from mtl_keras import datasets, export, models
from mtl_keras import features as F
from mtl_keras.backend import tf
from mtl_keras.features import frames

TASKS = ("ctr", "cvr")


def _spec(**numeric):
    return F.FeatureSpec([
        F.Numeric("price", **numeric), F.Categorical("user_id", embedding_dim=3), F.Categorical("category", embedding_dim=3),
        F.Categorical("device", vocabulary=list(datasets.DEVICES), embedding_dim=2),
        F.Sequence("clicked_items", embedding_of="user_id", max_length=4),
    ])


def _frame(n=200):
    """synthetic_recsys as pandas holds it: nullable Int64 ids, category, string and object columns, gaps."""
    x, y = datasets.synthetic_recsys(n, seed=3)
    frame = pd.DataFrame({
        "price": x["price"].astype(np.float64),
        "user_id": pd.array(x["user_id"], dtype="Int64"),
        "category": pd.Categorical(x["category"]),
        "device": pd.array(x["device"], dtype="string"),
        "clicked_items": pd.Series([[int(v) for v in row if v >= 0] for row in x["user_id"][:, None]], dtype=object),
        "ctr": y["ctr"].ravel(), "cvr": y["cvr"].ravel(),
    })
    return frame, x, y


def test_columns_missing_values_become_oov_and_defaults():
    frame = pd.DataFrame({
        "user_id": pd.array([7, None, 9], dtype="Int64"), "category": pd.Categorical(["a", None, "b"]),
        "device": pd.array(["ios", pd.NA, "web"], dtype="string"), "price": [1.5, None, 3.0],
        "clicked_items": [[1, None, 2], None, []], "gap_id": [4.0, np.nan, 6.0],
    })
    kinds = {"user_id": ("categorical", None), "category": ("categorical", None), "device": ("categorical", "string"),
             "price": ("numeric", None), "clicked_items": ("sequence", "int64"), "gap_id": ("categorical", "int64")}
    out = frames.columns(frame, kinds)
    assert out["user_id"].tolist() == [7, -1, 9] and out["user_id"].dtype == np.int64
    assert out["category"].tolist() == ["a", "", "b"] and out["device"].tolist() == ["ios", "", "web"]
    np.testing.assert_array_equal(out["price"], np.array([1.5, np.nan, 3.0], np.float32))
    assert [list(r) for r in out["clicked_items"]] == [[1, 2], [], []]
    assert out["gap_id"].tolist() == [4, -1, 6]  # an int column pandas read as float because of a gap
    with pytest.raises(ValueError, match=r"Feature 'gap_id' expects ids; got the fractional value 4.5"):
        frames.column("gap_id", pd.Series([4.5]), "categorical", "int64")
    with pytest.raises(ValueError, match=r"Feature 'price' expects numbers \(float32\); got values such as 'cheap'"):
        frames.column("price", pd.Series(["cheap"]), "numeric")


def test_adapt_fit_evaluate_predict_take_a_data_frame_and_a_dict_of_series(tmp_path):
    frame, x, y = _frame()
    frame.loc[0, "price"] = np.nan
    frame.loc[1, "user_id"] = pd.NA
    frame.loc[2, "category"] = np.nan
    spec = _spec()
    spec.adapt(frame)
    present = x["price"][1:].astype(np.float64)
    np.testing.assert_allclose(spec.features["price"].mean, [present.mean()], rtol=1e-5)  # gaps skipped
    assert spec.features["user_id"].value_dtype == "int64" and spec.features["category"].value_dtype == "string"
    assert "" not in spec.features["category"].vocabulary and -1 not in spec.features["user_id"].vocabulary
    model = models.shared_bottom(spec, list(TASKS), bottom_units=(8,))
    model.compile(loss={t: "binary_crossentropy" for t in TASKS})
    history = model.fit(frame, frame[list(TASKS)], epochs=1, batch_size=200, verbose=0,
                        validation_data=(frame, frame[list(TASKS)]))
    assert np.isfinite(history.history["val_loss"]).all()
    series = {name: frame[name] for name in frame.columns}
    assert np.isfinite(model.evaluate(series, {t: frame[t] for t in TASKS}, verbose=0)).all()
    predicted = model.predict(frame, verbose=0)
    assert np.isfinite(predicted["ctr"]).all()
    # A missing value is exactly the documented stand-in: "" / -1 (the OOV row), the mean (price).
    stand_in = frame.iloc[:3].copy()
    stand_in.loc[0, "price"] = float(spec.features["price"].mean[0])
    stand_in["user_id"] = stand_in["user_id"].astype("object").fillna(-1)
    stand_in["category"] = stand_in["category"].astype("object").fillna("")
    np.testing.assert_allclose(model.predict(stand_in, verbose=0)["ctr"], predicted["ctr"][:3], rtol=1e-5)
    # The export's predict_examples: a feature left out of an example is missing there too.
    path = export.export_saved_model(model, str(tmp_path / "m"))
    serve = tf.saved_model.load(path).signatures["predict_examples"]
    example = tf.train.Example()
    example.features.feature["device"].bytes_list.value.append(b"ios")
    example.features.feature["clicked_items"].int64_list.value.extend([])
    alone = pd.DataFrame({"device": ["ios"], "price": [float(spec.features["price"].mean[0])], "user_id": [-1],
                          "category": [""], "clicked_items": [[]]})
    served = serve(examples=tf.constant([example.SerializeToString()]))["ctr"].numpy()
    np.testing.assert_allclose(served, model.predict(alone, verbose=0)["ctr"], rtol=1e-5)


def test_numeric_default_replaces_missing_values_in_the_model():
    frame, _, _ = _frame(60)
    spec = _spec(default=100.0)
    spec.adapt(frame)
    model = models.shared_bottom(spec, list(TASKS), bottom_units=(4,))
    gap, filled = frame.iloc[:2].copy(), frame.iloc[:2].copy()
    gap.loc[0, "price"], filled.loc[0, "price"] = np.nan, 100.0
    np.testing.assert_allclose(model.predict(gap, verbose=0)["cvr"], model.predict(filled, verbose=0)["cvr"])


def test_census_income_takes_the_data_frame_read_with_pandas(census_path, tmp_path):
    head = tmp_path / "census.csv"  # the first 2000 rows: enough for every kind of column
    with gzip.open(census_path, "rt") as source:
        head.write_text("".join(line for line, _ in zip(source, range(2000))))
    from_file = datasets.census_income(head, one_hot=False, columns=True, test_fraction=0.5)
    frame = pd.read_csv(head, header=None)
    from_frame = datasets.census_income(frame, one_hot=False, columns=True, test_fraction=0.5)
    for name, column in from_file.train.x.items():
        np.testing.assert_array_equal(from_frame.train.x[name], column)
    np.testing.assert_array_equal(from_frame.test.y["income"], from_file.test.y["income"])
    with pytest.raises(ValueError, match=r"DataFrame without the census columns \['age'"):
        datasets.census_income(frame.rename(columns={0: "years"}).set_axis(["years"] + [f"c{i}" for i in range(41)],
                                                                         axis=1))
