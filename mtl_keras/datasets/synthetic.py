"""The MMoE paper's synthetic regression tasks with a controlled correlation (section 3.2)."""

import numpy as np


def synthetic_tasks(num_samples, correlation, dim=100, seed=0, scale=1.0, num_sines=10):
    """Two regression tasks whose correlation is controlled, as in MMoE section 3.2.

    Ma et al., "Modeling Task Relationships in Multi-task Learning with
    Multi-gate Mixture-of-Experts", KDD 2018: u1, u2 orthonormal in R^d;
    w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2); x ~ N(0, I_d);
    y_k = w_k . x + sum_{i=1..m} sin(alpha_i w_k . x + beta_i) + eps, with
    alpha_i, beta_i ~ N(0, 1) shared by both tasks (as in the PLE paper) and
    eps ~ N(0, 0.01) (variance 0.01).

    Args:
        num_samples: rows N.
        correlation: p in [-1, 1], the cosine between w1 and w2.
        dim: d.
        scale: c.
        num_sines: m.
        seed: seeds everything (directions, alphas, betas, x, noise).

    Returns:
        ``(x, {"task1": y1, "task2": y2})``, x float32 [N, d], labels float32 [N, 1].

    Example:
    >>> x, y = synthetic_tasks(200, correlation=0.9, dim=8)
    >>> x.shape, sorted(y), y["task1"].shape
    ((200, 8), ['task1', 'task2'], (200, 1))
    >>> bool(np.corrcoef(y["task1"].ravel(), y["task2"].ravel())[0, 1] > 0.5)
    True
    """
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"`correlation` must be in [-1, 1]; got {correlation!r}.")
    if int(num_samples) < 1 or int(dim) < 2:
        raise ValueError(f"`num_samples` must be >= 1 and `dim` >= 2; got {num_samples}, {dim}.")
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    u1, u2 = basis[:, 0], basis[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1.0 - correlation**2) * u2)
    alpha = rng.standard_normal(num_sines)
    beta = rng.standard_normal(num_sines)
    x = rng.standard_normal((num_samples, dim))

    def label(w):
        projection = x @ w
        sines = np.sin(projection[:, None] * alpha + beta).sum(axis=1)
        noise = rng.normal(0.0, 0.1, num_samples)
        return (projection + sines + noise).astype(np.float32)[:, None]

    return x.astype(np.float32), {"task1": label(w1), "task2": label(w2)}
