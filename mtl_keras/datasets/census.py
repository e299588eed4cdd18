"""UCI census-income (KDD), the MMoE paper's real-data benchmark (section 6.3)."""

import collections
import csv
import gzip

import numpy as np

from mtl_keras.features.frames import is_frame, is_missing

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
CensusSplit.__doc__ = """One split of ``census_income``: inputs ``x`` and labels ``y`` ({task: [N, 1]}).

Example:
>>> split = CensusSplit(x=np.zeros((2, 3), "float32"), y={"income": np.zeros((2, 1), "float32")})
>>> split.x.shape, sorted(split.y)
((2, 3), ['income'])
"""
CensusIncome = collections.namedtuple(
    "CensusIncome", "train validation test feature_names vocabulary_sizes"
)
CensusIncome.__doc__ = """What ``census_income`` returns: three ``CensusSplit`` and the inputs' description.

``feature_names`` names the input columns; ``vocabulary_sizes`` gives the
categorical columns' vocabulary sizes.

Example:
>>> CensusIncome._fields
('train', 'validation', 'test', 'feature_names', 'vocabulary_sizes')
"""


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
        path: the gzip (or plain) comma-separated file, no header, 42 columns;
            or a pandas DataFrame of those columns (named as ``CENSUS_COLUMNS``,
            or 0..41 as ``pd.read_csv(path, header=None)`` names them; a
            missing value is the file's own "?").
        group: 1 or 2.
        seed: seeds the train / validation / test split.
        validation_fraction, test_fraction: the shares of the rows in the
            validation and test splits.
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

    Example:
    A file of 40 made-up rows in the census layout (the real one: the UCI KDD archive):

    >>> rng = np.random.default_rng(0)
    >>> def row():
    ...     values = {c: str(rng.integers(0, 60)) if c in CENSUS_NUMERIC else f"c{rng.integers(3)}"
    ...               for c in CENSUS_COLUMNS}
    ...     values.update(income_50k=rng.choice(["50000+.", "- 50000."]),
    ...                   marital_stat=rng.choice(["Never married", "Divorced"]))
    ...     return ",".join(values[c] for c in CENSUS_COLUMNS)
    >>> with open("census.csv", "w") as handle:
    ...     _ = handle.write("\\n".join(row() for _ in range(40)) + "\\n")
    >>> data = census_income("census.csv", group=1)
    >>> sorted(data.train.y), sum(len(split.y["income"]) for split in (data.train, data.validation, data.test))
    (['income', 'marital'], 40)
    """
    if group not in _GROUPS:
        raise ValueError(f"`group` must be 1 or 2; got {group!r}.")
    if not (0 <= validation_fraction and 0 <= test_fraction and validation_fraction + test_fraction < 1):
        raise ValueError(
            "`validation_fraction` and `test_fraction` must be >= 0 and sum to < 1; "
            f"got {validation_fraction}, {test_fraction}."
        )
    rows = _frame_rows(path) if is_frame(path) else _read_rows(path)
    columns_by_name = {name: np.array(values) for name, values in zip(CENSUS_COLUMNS, zip(*rows))}
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
    vocabularies = [np.unique(columns_by_name[c][train]) for c in categorical_names]  # sorted
    categorical = np.stack(
        [_ids(columns_by_name[c], vocab) for c, vocab in zip(categorical_names, vocabularies)], axis=1
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


def _frame_rows(frame):
    """The DataFrame's rows as the file's: 42 stripped strings each, in ``CENSUS_COLUMNS`` order."""
    names = list(frame.columns)
    if names == list(range(len(CENSUS_COLUMNS))):
        names = list(CENSUS_COLUMNS)
        frame = frame.set_axis(names, axis=1)
    missing = [c for c in CENSUS_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"`path` is a DataFrame without the census columns {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            "name them as CENSUS_COLUMNS (or read the file with header=None)."
        )
    text = lambda v: "?" if is_missing(v) else str(v).strip()  # noqa: E731
    return [[text(v) for v in row] for row in frame[list(CENSUS_COLUMNS)].itertuples(index=False)]


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


def _ids(values, vocabulary):
    """Each value's 1-based position in the sorted ``vocabulary``; 0 where it is not in it."""
    position = np.minimum(np.searchsorted(vocabulary, values), len(vocabulary) - 1)
    return np.where(vocabulary[position] == values, position + 1, 0).astype(np.int32)


def _one_hot(ids, sizes):
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    out = np.zeros((ids.shape[0], int(np.sum(sizes))), dtype=np.float32)
    out[np.arange(ids.shape[0])[:, None], ids + offsets] = 1.0
    return out
