"""pandas DataFrames (and dicts of Series) as the columns a FeatureSpec reads.

Recommender data usually lives in a DataFrame; ``FeatureSpec.adapt``,
``MultiTaskModel.fit`` / ``evaluate`` / ``predict``, ``census_income`` and
``PredictClient.predict_examples`` take one. Each column becomes the NumPy
column its feature expects, whatever pandas holds it as (object, ``str``,
``string``, ``category``, nullable ``Int64``/``Float64``, an integer column
read as float because of a gap), and a missing value (``NaN``, ``None``,
``pd.NA``) becomes the feature's own way of saying "unknown":

- string ids: ``""``, never in a vocabulary (``adapt`` skips it), so the OOV row;
- integer ids: ``-1``, which the lookup sends to the OOV row (hashing: a bucket);
- sequences: a missing entry is dropped, a missing row is an empty sequence;
- numeric values: ``NaN``, which the model replaces by the feature's
  ``default`` (the training mean unless given; ``Numeric``), in training and
  in serving alike; ``adapt`` learns the statistics from the values present.

pandas is an optional dependency (``pip install mtl_keras[pandas]``): nothing
here imports it; a value is a DataFrame or Series when pandas made it.
"""

import sys

import numpy as np

from mtl_keras.features.layers import INT_PAD, STRING_PAD


def _is_pandas(value, kind):
    module = type(value).__module__ or ""
    return module.startswith("pandas") and type(value).__name__ == kind


def is_frame(data):
    """True for a pandas DataFrame or a dict holding pandas Series."""
    if _is_pandas(data, "DataFrame"):
        return True
    return isinstance(data, dict) and any(_is_pandas(v, "Series") for v in data.values())


def is_missing(value):
    """True for None, NaN, pandas.NA and pandas.NaT."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    pandas = sys.modules.get("pandas")
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def _objects(series):
    """The column as a NumPy object array, missing values as None."""
    values = series.to_numpy(dtype=object) if hasattr(series, "to_numpy") else np.asarray(series, dtype=object)
    out = np.empty(values.shape, dtype=object)  # filled one by one: entries may be lists (sequences)
    for i, value in enumerate(values.ravel()):
        out.flat[i] = None if is_missing(value) else value
    return out


def _id_kind(values):
    """'string' or 'int64' from the values present (pandas' dtype may be object or float)."""
    present = [v for v in values.ravel() if v is not None]
    if present and all(isinstance(v, (str, bytes)) for v in present):
        return "string"
    return "int64"


def _as_id(feature, value, value_dtype):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, (float, np.floating)):
        if value != int(value):
            raise ValueError(f"Feature {feature!r} expects ids; got the fractional value {value!r}.")
        value = int(value)  # an integer column that pandas read as float because of a gap
    if value_dtype == "string":
        return str(value)
    if isinstance(value, str):
        raise ValueError(f"Feature {feature!r} expects int64 ids; got the string {value!r}.")
    return int(value)


def _sequence(feature, values, value_dtype):
    rows = np.empty(len(values), dtype=object)  # ragged: padded by inputs.column_array
    for i, row in enumerate(values):
        entries = [] if row is None else [v for v in np.ravel(np.asarray(row, dtype=object)) if not is_missing(v)]
        rows[i] = [_as_id(feature, v, value_dtype) for v in entries]
    return rows


def column(feature, series, kind, value_dtype=None):
    """One pandas column as the NumPy column of a ``kind`` feature ("numeric", "categorical",
    "sequence"); ``value_dtype`` "string" or "int64" for ids (None: from the values)."""
    if kind == "numeric" and getattr(getattr(series, "dtype", None), "kind", "O") in "biuf":
        return series.to_numpy(dtype=np.float32, na_value=np.nan)  # numbers, nullable ones included
    values = _objects(series)
    if kind == "numeric":
        try:
            return np.array([np.nan if v is None else v for v in values.ravel()], np.float32).reshape(values.shape)
        except (TypeError, ValueError):
            raise ValueError(f"Feature {feature!r} expects numbers (float32); got values such as "
                             f"{next(v for v in values.ravel() if v is not None)!r}.") from None
    if kind == "sequence":
        present = [e for row in values if row is not None for e in np.ravel(np.asarray(row, dtype=object))
                   if not is_missing(e)]
        dtype = value_dtype or _id_kind(np.array(present, dtype=object))
        return _sequence(feature, values, dtype)
    dtype = value_dtype or _id_kind(values)
    pad = STRING_PAD if dtype == "string" else INT_PAD
    ids = [pad if v is None else _as_id(feature, v, dtype) for v in values.ravel()]
    return np.array(ids, dtype=str if dtype == "string" else np.int64)


def columns(data, kinds):
    """``data`` (a DataFrame or a dict of Series/arrays) as {name: NumPy column}.

    Args:
        data: the DataFrame, or a dict of pandas Series (other values pass through).
        kinds: {feature name: (kind, value_dtype or None)}; columns not named
            pass through as NumPy arrays (labels, columns no feature reads).

    Returns:
        {name: NumPy array}: ids as str or int64 [N], numbers float32 [N],
        sequences an object array of lists.

    Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"user_id": pd.array([7, None], dtype="Int64"), "device": ["ios", None],
    ...                       "price": [9.5, None]})
    >>> out = columns(frame, {"user_id": ("categorical", None), "device": ("categorical", "string"),
    ...                       "price": ("numeric", None)})
    >>> out["user_id"].tolist(), out["device"].tolist(), out["price"].tolist()
    ([7, -1], ['ios', ''], [9.5, nan])
    """
    names = list(data.columns) if _is_pandas(data, "DataFrame") else list(data)
    out = {}
    for name in names:
        values = data[name]
        if name in kinds:
            out[name] = column(name, values, *kinds[name])
        elif _is_pandas(values, "Series"):
            out[name] = values.to_numpy()
        else:
            out[name] = values
    return out


def labels(data):
    """Task labels from a DataFrame or a dict of Series: {task: float32 [N, 1]}, missing as NaN
    (masked out of the task's loss). Anything else is returned unchanged.

    Example:
    >>> import pandas as pd
    >>> labels(pd.DataFrame({"ctr": [1, 0], "cvr": [1.0, None]}))["cvr"].tolist()
    [[1.0], [nan]]
    """
    if not is_frame(data):
        return data
    names = list(data.columns) if _is_pandas(data, "DataFrame") else list(data)
    return {name: column(name, data[name], "numeric").reshape(-1, 1) for name in names}
