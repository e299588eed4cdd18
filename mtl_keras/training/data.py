"""The data MultiTaskModel's fit / evaluate / predict take, checked before Keras reads it.

Keras's own errors for string data name no task or feature ("Invalid dtype:
str32", a 2 KB graph error), and Keras refuses ``class_weight`` for a model of
several outputs; here both are per task.
"""

import numpy as np

from mtl_keras.backend import tf
from mtl_keras.training import labels
from mtl_keras.training.labels import check_task_keys


def data_arguments(model, args, kwargs):
    """``(args, kwargs)`` of fit / evaluate / predict, checked before Keras reads them.

    A string column for a numeric input, a numeric one for a string input and
    string labels raise a ValueError naming the feature or task (Keras's own
    errors name neither), from arrays and from a tf.data.Dataset's element
    spec; ``validation_data`` likewise. ``class_weight`` ({task: {class:
    weight}}, which Keras refuses for a model of several outputs) becomes
    per-task sample weights, multiplied into any given. Per-task ``sample_weight``
    may leave tasks out (weight 1).
    """
    args = list(args)
    x = args[0] if args else kwargs.get("x")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    _check_data(model, x, y)
    validation = kwargs.get("validation_data")
    if isinstance(validation, (tuple, list)) and validation:
        _check_data(model, validation[0], validation[1] if len(validation) > 1 else None)
    elif validation is not None:
        _check_data(model, validation, None)
    class_weight = kwargs.pop("class_weight", None)
    if class_weight:
        trained = model.trained_tasks
        labels.check_class_weight(class_weight, trained)
        if isinstance(x, tf.data.Dataset):
            x = _dataset_with_class_weight(x, class_weight, trained)
            if args:
                args[0] = x
            else:
                kwargs["x"] = x
        elif y is not None:
            weights = labels.with_class_weight(class_weight, trained, y, kwargs.get("sample_weight"))
            kwargs["sample_weight"] = {task: np.asarray(w) for task, w in weights.items()}
        else:
            raise ValueError("`class_weight` needs labels: arrays `x` and `y`, or a "
                             "tf.data.Dataset of (x, y) or (x, y, sample_weight).")
    if isinstance(kwargs.get("sample_weight"), dict) and isinstance(y, dict):
        kwargs["sample_weight"] = _weights_for_every_label(kwargs["sample_weight"], y, model)
    return tuple(args), kwargs


def _weights_for_every_label(sample_weight, y, model):
    """Weights of 1 for the tasks ``sample_weight`` leaves out: Keras 3 wants one per label."""
    check_task_keys("sample_weight", sample_weight, model.task_names)
    rows = len(next(iter(y.values())))
    return {task: sample_weight.get(task, np.ones(rows, "float32")) for task in y}


def check_inputs(model, x):
    """ValueError naming the feature whose values are strings for a numeric input, or
    numbers for a string input (``x``: arrays, tensors or a dataset's TensorSpecs)."""
    expected = {tensor.name: tf.as_dtype(tensor.dtype) for tensor in model.inputs}
    if isinstance(x, dict):
        given = [(name, value) for name, value in x.items() if name in expected]
    elif isinstance(x, (list, tuple)) and len(x) == len(expected):
        given = list(zip(expected, x))
    elif len(expected) == 1 and hasattr(x, "dtype"):
        given = [(next(iter(expected)), x)]
    else:
        return
    for name, value in given:
        text = labels.is_text(value)
        if text and expected[name] != tf.string:
            raise ValueError(
                f"Feature {name!r} expects {expected[name].name} values; got strings (dtype "
                f"{value.dtype.name}). Map the ids to integers first (keras.layers.StringLookup, "
                "or a FeatureSpec string feature)."
            )
        if not text and expected[name] == tf.string and _numeric(value):
            raise ValueError(f"Feature {name!r} expects strings; got dtype {value.dtype.name}.")


def _check_data(model, x, y):
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        x, y = (spec[0], spec[1]) if isinstance(spec, tuple) and len(spec) in (2, 3) else (spec, None)
    check_inputs(model, x)
    compiled = getattr(model, "trained_tasks", None)
    if compiled and (isinstance(y, dict) or hasattr(y, "dtype")):
        labels.check_targets(y, model)


def _numeric(value):
    try:
        dtype = tf.as_dtype(value.dtype)
    except (AttributeError, TypeError):
        return False
    return dtype.is_floating or dtype.is_integer or dtype.is_bool


def _dataset_with_class_weight(dataset, class_weight, trained):
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) in (2, 3)):
        raise ValueError("`class_weight` with a tf.data.Dataset needs elements (x, y) or "
                         f"(x, y, sample_weight); got {spec}.")

    def weighted(x, y, sample_weight=None):
        return x, y, labels.with_class_weight(class_weight, trained, y, sample_weight)

    return dataset.map(weighted)


def first_replica_batch(model, iterator):
    """The first batch of a Keras 3 epoch iterator, each distributed value read on its first
    replica: what ``model`` builds its metrics and optimizer from under a strategy (Keras 3
    averages the replicas' batches there, which a string column cannot be). None without a
    strategy, the iterator untouched."""
    if getattr(model, "_distribute_strategy", None) is None:
        return None
    for _, _, batches in iterator:
        local = model.distribute_strategy.experimental_local_results
        return tf.nest.map_structure(
            lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
    return None
