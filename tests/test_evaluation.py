"""mtl_keras.evaluation against the definitions: AUC as the share of correctly ordered pairs."""

import numpy as np
import pytest

from mtl_keras.evaluation import auc, log_loss


def test_auc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300), 1)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    assert auc(labels, scores) == pytest.approx(pairwise, abs=1e-12)
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_log_loss_is_the_mean_cross_entropy():
    labels, scores = np.array([1, 0, 1]), np.array([0.8, 0.3, 0.5])
    expected = -np.mean([np.log(0.8), np.log(0.7), np.log(0.5)])
    assert log_loss(labels, scores) == pytest.approx(expected)
    assert np.isfinite(log_loss([1, 0], [0.0, 1.0]))
