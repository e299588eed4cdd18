"""Benchmark data: the MMoE paper's synthetic tasks, a synthetic recommender funnel, UCI census-income."""

import collections
import csv
import gzip

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
        dim: d. scale: c. num_sines: m.
        seed: seeds everything (directions, alphas, betas, x, noise).

    Returns:
        ``(x, {"task1": y1, "task2": y2})``, x float32 [N, d], labels float32 [N, 1].
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


CENSUS_COLUMNS = (
    "age class_worker det_ind_code det_occ_code education wage_per_hour hs_college marital_stat "
    "major_ind_code major_occ_code race hisp_origin sex union_member unemp_reason full_or_part_emp "
    "capital_gains capital_losses stock_dividends tax_filer_stat region_prev_res state_prev_res "
    "det_hh_fam_stat det_hh_summ instance_weight mig_chg_msa mig_chg_reg mig_move_reg mig_same "
    "mig_prev_sunbelt num_emp fam_under_18 country_father country_mother country_self citizenship "
    "own_or_self vet_question vet_benefits weeks_worked year income_50k"
).split()
CENSUS_NUMERIC = (
    "age wage_per_hour capital_gains capital_losses stock_dividends num_emp weeks_worked".split()
)
# "At least college": a college degree, associate's or higher.
_COLLEGE = (
    "Associates degree-academic program",
    "Associates degree-occup /vocational",
    "Bachelors degree(BA AB BS)",
    "Masters degree(MA MS MEng MEd MSW MBA)",
    "Doctorate degree(PhD EdD)",
    "Prof school degree (MD DDS DVM LLB JD)",
)
_TASKS = {
    "income": ("income_50k", lambda v: v == "50000+."),
    "marital": ("marital_stat", lambda v: v == "Never married"),
    "education": ("education", lambda v: v in _COLLEGE),
}
_GROUPS = {1: ("income", "marital"), 2: ("education", "marital")}

CensusSplit = collections.namedtuple("CensusSplit", "x y")
CensusIncome = collections.namedtuple(
    "CensusIncome", "train validation test feature_names vocabulary_sizes"
)


def census_income(
    path, group=1, seed=0, validation_fraction=0.15, test_fraction=0.15, one_hot=True, columns=False
):
    """The UCI census-income (KDD) tasks of the MMoE paper, section 6.3.

    Group 1: income > 50K and marital status "Never married"; group 2:
    education at least college and "Never married". The columns a group's
    labels come from, and the survey weight, are removed from the inputs.
    Numeric columns are standardised with the training split's mean and
    standard deviation; categories get ids from the training split's
    vocabulary (0 = unseen). Plain NumPy rather than ``FeatureSpace`` so the
    arrays are identical under Keras 3 and tf_keras.

    Args:
        path: the gzip (or plain) comma-separated file, no header, 42 columns.
        group: 1 or 2.
        seed: seeds the train / validation / test split.
        one_hot: x is ``{"features": float32 [N, D]}`` (numeric then one-hot
            categories); else ``{"numeric": float32 [N, 7], "categorical":
            int32 [N, C]}`` for embeddings.
        columns: with ``one_hot=False``, x is one entry per column instead,
            for a ``mtl_keras.features.FeatureSpec``: the numeric columns
            standardised (float32 [N]), the categorical ones as their raw
            strings [N] (``Categorical`` learns their vocabulary in ``adapt``).

    Returns:
        ``CensusIncome(train, validation, test, feature_names, vocabulary_sizes)``,
        each split a ``CensusSplit(x, y)`` with y ``{task: float32 [N, 1]}``.
    """
    if group not in _GROUPS:
        raise ValueError(f"`group` must be 1 or 2; got {group!r}.")
    if not (0 <= validation_fraction and 0 <= test_fraction and validation_fraction + test_fraction < 1):
        raise ValueError(
            "`validation_fraction` and `test_fraction` must be >= 0 and sum to < 1; "
            f"got {validation_fraction}, {test_fraction}."
        )
    rows = _read_rows(path)
    columns_by_name = {name: np.array([row[i] for row in rows]) for i, name in enumerate(CENSUS_COLUMNS)}
    tasks = _GROUPS[group]
    labels = {}
    for task in tasks:
        column, is_positive = _TASKS[task]
        labels[task] = np.array([is_positive(v) for v in columns_by_name[column]], np.float32)[:, None]
    dropped = {"instance_weight"} | {_TASKS[task][0] for task in tasks}
    numeric_names = [c for c in CENSUS_NUMERIC if c not in dropped]
    categorical_names = [c for c in CENSUS_COLUMNS if c not in dropped and c not in CENSUS_NUMERIC]

    order = np.random.default_rng(seed).permutation(len(rows))
    n_test = int(round(test_fraction * len(rows)))
    n_val = int(round(validation_fraction * len(rows)))
    parts = {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_val],
        "train": order[n_test + n_val :],
    }
    train = parts["train"]
    numeric = np.stack([columns_by_name[c].astype(np.float32) for c in numeric_names], axis=1)
    mean, std = numeric[train].mean(axis=0), numeric[train].std(axis=0)
    numeric = (numeric - mean) / np.where(std > 0, std, 1.0)
    vocabularies = [
        {value: i + 1 for i, value in enumerate(sorted(set(columns_by_name[c][train])))}
        for c in categorical_names
    ]
    categorical = np.stack(
        [
            np.array([vocab.get(v, 0) for v in columns_by_name[c]], dtype=np.int32)
            for c, vocab in zip(categorical_names, vocabularies)
        ],
        axis=1,
    )
    sizes = [len(vocab) + 1 for vocab in vocabularies]
    feature_names = list(numeric_names)
    for name, vocab in zip(categorical_names, vocabularies):
        feature_names += [f"{name}=<unseen>"] + [f"{name}={v.strip()}" for v in vocab]

    def split(index):
        if one_hot:
            x = {"features": np.concatenate([numeric[index], _one_hot(categorical[index], sizes)], axis=1)}
        elif columns:
            x = {name: numeric[index, j] for j, name in enumerate(numeric_names)}
            x.update({name: columns_by_name[name][index] for name in categorical_names})
        else:
            x = {"numeric": numeric[index], "categorical": categorical[index]}
        return CensusSplit(x, {task: labels[task][index] for task in tasks})

    return CensusIncome(
        split(parts["train"]),
        split(parts["validation"]),
        split(parts["test"]),
        feature_names if one_hot else numeric_names + categorical_names,
        dict(zip(categorical_names, sizes)),
    )


def _read_rows(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        rows = [[field.strip() for field in row] for row in csv.reader(handle) if row]
    bad = next((i for i, row in enumerate(rows) if len(row) != len(CENSUS_COLUMNS)), None)
    if bad is not None:
        raise ValueError(
            f"`path` {path}: row {bad + 1} has {len(rows[bad])} fields; expected {len(CENSUS_COLUMNS)}."
        )
    return rows


def _one_hot(ids, sizes):
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.zeros((ids.shape[0], int(np.sum(sizes))), dtype=np.float32)
    out[np.arange(ids.shape[0])[:, None], ids + offsets] = 1.0
    return out
