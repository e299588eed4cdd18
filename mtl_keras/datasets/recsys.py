"""A synthetic recommender log: sparse ids, click histories and an impression -> click -> conversion funnel."""

import numpy as np

from mtl_keras.features import Categorical, FeatureSpec, Numeric, Sequence


DEVICES = ("ios", "android", "web")


def synthetic_recsys(
    num_samples,
    seed=0,
    num_users=1000,
    num_items=500,
    num_categories=20,
    num_segments=8,
    history_length=20,
    latent_dim=8,
    unobserved="nan",
    return_probabilities=False,
):
    """Impressions of a recommender with sparse ids and an impression -> click -> conversion funnel.

    Each user u has an activity b_u ~ N(0, 1), a hidden segment s(u) and
    latent factors U_u; each item i an appeal e_i ~ N(0, 0.5), a category
    c(i), factors V_i (rows N(0, I / latent_dim)), a popularity, a quality
    and a price; each impression a device d. With the affinity
    a(u, i) = b_u + e_i + M[s(u), c(i)] + 2 <U_u, V_i> (M ~ N(0, 1) of
    [num_segments, num_categories]):

    - click ~ Bernoulli(sigmoid(a + pop_i + dev_d - 1.5)),
    - conversion ~ Bernoulli(sigmoid(1.5 a + q_i - 0.5 log(price_i) - 1)),
      drawn for every impression but only observed after a click.

    Both tasks rest on the same user-item affinity, which a model learns
    through the user and item embeddings, and conversions are sparse: what
    shared embeddings help. A user's click history holds ``history_length``
    items drawn with probability proportional to exp(a(u, i)), each row cut
    at a random length in [1, history_length] and padded with -1.

    Args:
        num_samples: impressions N.
        seed: seeds everything.
        num_users, num_items, num_categories, num_segments: id ranges (ids 0..n-1).
        history_length: padded width L of ``clicked_items``.
        latent_dim: width of the latent factors.
        unobserved: the conversion label of impressions without a click:
            "nan" (missing: this library masks NaN labels out of the loss) or
            "zero" (a 0 label, as the raw logs would have it).
        return_probabilities: also return the true probabilities
            ``{"ctr": P(click), "cvr": P(conversion | click)}`` [N, 1] (the
            best any model can do, for benchmarks).

    Returns:
        ``(x, y)``. x: "user_id" int64 [N], "item_id" int64 [N], "category"
        string [N] ("cat_07"), "device" string [N] (ios / android / web),
        "price" float32 [N], "clicked_items" int64 [N, L] (-1 pads).
        y: "ctr" (click), "cvr" (conversion given click; NaN or 0 without a
        click), "ctcvr" (click and conversion), each float32 [N, 1].

    Example:
    >>> x, y = synthetic_recsys(100, seed=0)
    >>> sorted(x), sorted(y), x["clicked_items"].shape
    (['category', 'clicked_items', 'device', 'item_id', 'price', 'user_id'], ['ctcvr', 'ctr', 'cvr'], (100, 20))
    """
    if int(num_samples) < 1:
        raise ValueError(f"`num_samples` must be >= 1; got {num_samples!r}.")
    if unobserved not in ("nan", "zero"):
        raise ValueError(f"`unobserved` must be 'nan' or 'zero'; got {unobserved!r}.")
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(latent_dim)
    users = rng.normal(0.0, scale, (num_users, latent_dim))
    items = rng.normal(0.0, scale, (num_items, latent_dim))
    activity = rng.normal(0.0, 1.0, num_users)
    appeal = rng.normal(0.0, 0.5, num_items)
    segment = rng.integers(0, num_segments, num_users)
    segment_affinity = rng.normal(0.0, 1.0, (num_segments, num_categories))
    item_category = rng.integers(0, num_categories, num_items)
    popularity = rng.normal(0.0, 0.5, num_items)
    quality = rng.normal(0.0, 0.5, num_items)
    price = np.exp(rng.normal(3.0, 0.7, num_items))
    device_bias = np.array([0.3, 0.0, -0.3])
    # a(u, i) for every pair: [num_users, num_items].
    affinity = (
        activity[:, None] + appeal[None, :] + segment_affinity[segment][:, item_category] + 2.0 * users @ items.T
    )

    user = rng.integers(0, num_users, num_samples)
    item = rng.integers(0, num_items, num_samples)
    device = rng.integers(0, len(DEVICES), num_samples)
    pair = affinity[user, item]
    p_click = _sigmoid(pair + popularity[item] + device_bias[device] - 1.5)
    p_convert = _sigmoid(1.5 * pair + quality[item] - 0.5 * np.log(price[item]) - 1.0)
    click = rng.random(num_samples) < p_click
    convert = rng.random(num_samples) < p_convert
    history = _histories(rng, affinity, user, history_length)

    cvr = convert.astype(np.float32)
    cvr[~click] = np.nan if unobserved == "nan" else 0.0
    x = {
        "user_id": user.astype(np.int64),
        "item_id": item.astype(np.int64),
        "category": np.array([f"cat_{c:02d}" for c in item_category[item]]),
        "device": np.array(DEVICES)[device],
        "price": price[item].astype(np.float32),
        "clicked_items": history,
    }
    y = {
        "ctr": click.astype(np.float32)[:, None],
        "cvr": cvr[:, None],
        "ctcvr": (click & convert).astype(np.float32)[:, None],
    }
    if return_probabilities:
        truth = {"ctr": p_click, "cvr": p_convert}
        return x, y, {task: p.astype(np.float32)[:, None] for task, p in truth.items()}
    return x, y


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _histories(rng, affinity, user, length):
    """Per row, ``length`` items drawn from softmax(a(u, .)), cut at a random length, -1 padded."""
    probabilities = np.exp(affinity - affinity.max(axis=1, keepdims=True))
    cumulative = np.cumsum(probabilities, axis=1)
    draws = rng.random((len(user), length)) * cumulative[user, -1:]
    history = np.empty((len(user), length), np.int64)
    for row in range(len(user)):
        history[row] = np.searchsorted(cumulative[user[row]], draws[row])
    history = np.minimum(history, affinity.shape[1] - 1)
    kept = rng.integers(1, length + 1, len(user))
    history[np.arange(length)[None, :] >= kept[:, None]] = -1
    return history


def synthetic_recsys_spec(x):
    """The FeatureSpec of ``synthetic_recsys``'s columns, adapted on the rows ``x``.

    Every column is shared by the tasks: ids with learnt vocabularies, the
    device from its known values, the click history pooled from the item table.

    Args:
        x: the columns ``synthetic_recsys`` returns (or a part of its rows).

    Returns:
        The adapted ``FeatureSpec``.

    Example:
    >>> x, _ = synthetic_recsys(200, seed=0)
    >>> list(synthetic_recsys_spec(x).features)
    ['price', 'user_id', 'item_id', 'category', 'device', 'clicked_items']
    """
    spec = FeatureSpec([
        Numeric("price"),
        Categorical("user_id", embedding_dim=8),
        Categorical("item_id", embedding_dim=8),
        Categorical("category", embedding_dim=4),
        Categorical("device", vocabulary=list(DEVICES), embedding_dim=2),
        Sequence("clicked_items", embedding_of="item_id", max_length=20),
    ])
    spec.adapt(x)
    return spec
