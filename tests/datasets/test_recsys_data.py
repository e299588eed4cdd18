"""synthetic_recsys: seeded, the funnel's label relations, and labels drawn from the stated probabilities."""

import numpy as np
import pytest

from mtl_keras import datasets


def test_seeded_shapes_and_dtypes():
    x, y = datasets.synthetic_recsys(500, seed=4, history_length=7)
    again, _ = datasets.synthetic_recsys(500, seed=4, history_length=7)
    for name in x:
        np.testing.assert_array_equal(x[name], again[name])
    assert x["user_id"].dtype == np.int64 and x["device"].dtype.kind == "U" and x["price"].dtype == np.float32
    assert x["clicked_items"].shape == (500, 7)
    assert set(np.unique(x["device"])) <= set(datasets.DEVICES)
    other, _ = datasets.synthetic_recsys(500, seed=5, history_length=7)
    assert not np.array_equal(other["user_id"], x["user_id"])


def test_conversions_are_observed_only_after_clicks():
    x, y = datasets.synthetic_recsys(3000, seed=0)
    click, cvr, ctcvr = y["ctr"].ravel(), y["cvr"].ravel(), y["ctcvr"].ravel()
    np.testing.assert_array_equal(np.isnan(cvr), click == 0)
    np.testing.assert_array_equal(ctcvr, np.nan_to_num(cvr) * click)
    _, zeros = datasets.synthetic_recsys(3000, seed=0, unobserved="zero")
    np.testing.assert_array_equal(zeros["cvr"].ravel(), np.nan_to_num(cvr))
    history = x["clicked_items"]
    assert (history[:, 0] >= 0).all()  # at least one item a row
    padded = history < 0
    assert not (padded[:, :-1] & ~padded[:, 1:]).any()  # padding only at the end
    with pytest.raises(ValueError, match="unobserved"):
        datasets.synthetic_recsys(10, unobserved="missing")


def test_labels_follow_the_returned_probabilities():
    _, y, p = datasets.synthetic_recsys(20000, seed=1, return_probabilities=True)
    click = y["ctr"].ravel() == 1
    # Bernoulli draws: the means agree within a few standard errors.
    assert y["ctr"].mean() == pytest.approx(p["ctr"].mean(), abs=4 * np.sqrt(0.25 / 20000))
    observed = y["cvr"].ravel()[click]
    assert observed.mean() == pytest.approx(p["cvr"].ravel()[click].mean(), abs=4 * np.sqrt(0.25 / click.sum()))
    # The tasks share the affinity: the true click and conversion probabilities are correlated.
    assert np.corrcoef(p["ctr"].ravel(), p["cvr"].ravel())[0, 1] > 0.5
