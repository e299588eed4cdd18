import numpy as np
import pytest

from mtl_keras import datasets


def test_synthetic_tasks_shapes_and_seed():
    x, y = datasets.synthetic_tasks(500, 0.3, dim=20, seed=3)
    assert x.shape == (500, 20) and x.dtype == np.float32
    assert set(y) == {"task1", "task2"} and y["task1"].shape == (500, 1)
    x2, y2 = datasets.synthetic_tasks(500, 0.3, dim=20, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y["task2"], y2["task2"])
    _, y3 = datasets.synthetic_tasks(500, 0.3, dim=20, seed=4)
    assert not np.allclose(y["task1"], y3["task1"])


def test_synthetic_tasks_follow_the_generator():
    # p = 1: w1 == w2, so y1 - y2 is the difference of two N(0, 0.01) noises (std 0.1 * sqrt 2).
    x, y = datasets.synthetic_tasks(20000, 1.0, seed=0)
    diff = (y["task1"] - y["task2"]).ravel()
    assert abs(diff.std() - 0.1 * np.sqrt(2)) < 0.005
    assert abs(diff.mean()) < 0.005
    # The labels are functions of w_k . x alone: regressing y1 on x recovers a vector
    # along w1, which for p = 0 is orthogonal to the one for y2.
    x, y = datasets.synthetic_tasks(20000, 0.0, seed=1)
    b1 = np.linalg.lstsq(x, y["task1"] - y["task1"].mean(), rcond=None)[0].ravel()
    b2 = np.linalg.lstsq(x, y["task2"] - y["task2"].mean(), rcond=None)[0].ravel()
    cosine = b1 @ b2 / np.linalg.norm(b1) / np.linalg.norm(b2)
    assert abs(cosine) < 0.1


def test_synthetic_label_correlation_rises_with_p():
    corr = []
    for p in (0.0, 0.5, 0.9):
        _, y = datasets.synthetic_tasks(20000, p, seed=2)
        corr.append(np.corrcoef(y["task1"].ravel(), y["task2"].ravel())[0, 1])
    assert corr[0] < corr[1] < corr[2]


@pytest.mark.parametrize("p", [-1.5, 2.0])
def test_synthetic_correlation_out_of_range(p):
    with pytest.raises(ValueError, match="correlation"):
        datasets.synthetic_tasks(10, p)


def test_census_income_group_1(census_path):
    data = datasets.census_income(census_path, group=1, seed=0)
    n = sum(len(s.x["features"]) for s in (data.train, data.validation, data.test))
    assert n == 99762
    assert len(data.validation.x["features"]) == round(0.15 * n)
    assert set(data.train.y) == {"income", "marital"}
    rate_income = np.mean(np.concatenate([s.y["income"] for s in (data.train, data.validation, data.test)]))
    rate_marital = np.mean(np.concatenate([s.y["marital"] for s in (data.train, data.validation, data.test)]))
    assert rate_income == pytest.approx(6186 / 99762, abs=1e-6)
    assert rate_marital == pytest.approx(43143 / 99762, abs=1e-6)
    names = data.feature_names
    assert not any(n.startswith(("income_50k", "marital_stat", "instance_weight")) for n in names)
    assert any(n.startswith("education=") for n in names)
    features = data.train.x["features"]
    assert features.shape[1] == len(names) and features.dtype == np.float32
    np.testing.assert_allclose(features[:, :7].mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(features[:, :7].std(0), 1.0, atol=1e-3)
    # one-hot: each of the categorical columns contributes exactly one 1 per row
    assert np.all(features[:, 7:].sum(1) == len(data.vocabulary_sizes))


def test_census_income_group_2_and_ids(census_path):
    data = datasets.census_income(census_path, group=2, seed=1, one_hot=False)
    assert set(data.test.y) == {"education", "marital"}
    assert "education" not in data.vocabulary_sizes and "income_50k" in data.vocabulary_sizes
    categorical = data.train.x["categorical"]
    assert categorical.dtype == np.int32
    assert categorical.shape[1] == len(data.vocabulary_sizes)
    assert (categorical.max(0) < np.array(list(data.vocabulary_sizes.values()))).all()
    again = datasets.census_income(census_path, group=2, seed=1, one_hot=False)
    np.testing.assert_array_equal(again.test.x["numeric"], data.test.x["numeric"])


def test_census_income_bad_arguments(census_path, tmp_path):
    with pytest.raises(ValueError, match="group"):
        datasets.census_income(census_path, group=3)
    bad = tmp_path / "bad.csv"
    bad.write_text("1, 2, 3\n")
    with pytest.raises(ValueError, match="row 1 has 3 fields; expected 42"):
        datasets.census_income(bad)
