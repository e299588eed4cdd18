"""Offline evaluation of a multi-task model's predictions, in NumPy: AUC and log loss per task.

Exact rather than Keras's streaming ``AUC`` metric (which buckets scores into
thresholds): what the demo's table and the benchmarks' quality tables report.
"""

import numpy as np


def auc(labels, scores):
    """ROC AUC by the rank-sum (Mann-Whitney) formula; tied scores share their mean rank.

    Args:
        labels: 0/1 labels, any shape (flattened).
        scores: the predicted scores, the same number of them.

    Returns:
        The AUC as a float; NaN when the labels hold a single class.

    Example:
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    labels, scores = np.asarray(labels).ravel(), np.asarray(scores, np.float64).ravel()
    positives = labels == 1
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels, scores, epsilon=1e-7):
    """The mean binary cross-entropy of probabilities ``scores`` (clipped to [eps, 1 - eps]).

    Args:
        labels: 0/1 labels [N].
        scores: predicted probabilities [N].
        epsilon: the clipping margin eps.

    Returns:
        The log loss, a float.

    Example:
    >>> round(log_loss([1, 0], [0.9, 0.2]), 4)
    0.1643
    """
    labels = np.asarray(labels, np.float64).ravel()
    p = np.clip(np.asarray(scores, np.float64).ravel(), epsilon, 1 - epsilon)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


__all__ = ["auc", "log_loss"]
