"""Labels: their checks, and per-task losses where a NaN label means *missing*.

The label dict is checked when the step is traced, so bad labels fail before
any training step executes.

A task's loss follows Keras's "sum_over_batch_size" reduction with the rows
whose label is missing masked out, as Keras 3 reduces a masked loss: the sum
of sample weight x per-example loss over the labelled rows, divided by the
number of labelled rows. So a uniform sample weight of 2 doubles the loss, as
in a single-output Keras model; a labelled row of weight 0 still counts in
the denominator (as in Keras), a row with a NaN label does not (in a Keras
model that gives those rows weight 0 instead, the loss is smaller by the
labelled fraction of the batch). A batch with no label for a task contributes
zero loss and zero gradient for it. The loss is returned as a (sum, count)
pair so the caller can normalise by the *global* count under tf.distribute.
"""

import numpy as np

from mtl_keras.backend import keras, tf
from mtl_keras.core.task_gradients import replica_sum


def per_example_loss(identifier, task):
    """A function (y_true, y_pred) -> [B] from a loss name, Loss object or callable."""
    if identifier is None:
        return None
    try:
        loss = keras.losses.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(f"`loss` for task {task!r}: unknown loss {identifier!r} ({error}).")
    if isinstance(loss, keras.losses.Loss):
        # Loss objects reduce in __call__; .call gives the per-example values.
        return loss.call
    if not callable(loss):
        raise ValueError(f"`loss` for task {task!r} must be a loss name, Loss or callable; got {identifier!r}.")
    return loss


def align_labels(y_true, y_pred):
    """Labels as y_pred's dtype and rank ([B] becomes [B, 1] for a one-unit head)."""
    if y_true.dtype.is_floating or y_pred.shape[-1] == 1:
        y_true = tf.cast(y_true, y_pred.dtype)
    if y_true.shape.rank == 1 and y_pred.shape.rank == 2 and y_pred.shape[-1] == 1:
        y_true = y_true[:, None]
    return y_true


def label_mask(y_true):
    """(labels with NaN replaced by 0, [B] float mask of rows whose label is present)."""
    if not y_true.dtype.is_floating:
        return y_true, tf.ones(tf.shape(y_true)[:1], tf.float32)
    missing = tf.math.is_nan(y_true)
    row_missing = missing if y_true.shape.rank == 1 else tf.reduce_any(
        tf.reshape(missing, [tf.shape(y_true)[0], -1]), axis=1
    )
    clean = tf.where(missing, tf.zeros_like(y_true), y_true)
    return clean, 1.0 - tf.cast(row_missing, tf.float32)


def _row_weights(mask, sample_weight):
    """[B] each row's weight in a task's loss: 0 where its label is missing."""
    if sample_weight is None:
        return mask
    return mask * tf.reshape(tf.cast(sample_weight, tf.float32), [-1])


def task_presence(tasks, y, sample_weight=None):
    """[T] 1.0 for each task with a labelled row of nonzero weight in the global batch, else 0:
    whether its loss this step measures anything (without one it is 0, and so is its gradient)."""
    counts = []
    for task in tasks:
        if task not in y:
            counts.append(tf.constant(0.0))
            continue
        weight = sample_weight.get(task) if isinstance(sample_weight, dict) else sample_weight
        counts.append(tf.reduce_sum(tf.cast(_row_weights(label_mask(y[task])[1], weight) != 0, tf.float32)))
    # One sum over the replicas for every task, not one each.
    return tf.cast(replica_sum(tf.stack(counts)) > 0, tf.float32)


def masked_loss_terms(loss_fn, y_true, y_pred, sample_weight=None):
    """(sum of weighted per-example losses over labelled rows, number of labelled rows)."""
    y_true, mask = label_mask(align_labels(y_true, y_pred))
    per_example = tf.cast(loss_fn(y_true, y_pred), tf.float32)
    if per_example.shape.rank > 1:
        per_example = tf.reduce_mean(tf.reshape(per_example, [tf.shape(per_example)[0], -1]), axis=1)
    weight = _row_weights(mask, sample_weight)
    # tf.where keeps a NaN/inf prediction on a masked row out of the sum and its gradient.
    contribution = tf.where(weight != 0, per_example * weight, tf.zeros_like(per_example))
    return tf.reduce_sum(contribution), tf.reduce_sum(mask)


def loss_shares(loss_fns, tasks, y, y_pred, sample_weight=None, suffix=""):
    """Each task's loss share on this replica, labelled rows only: local sum / global label
    count, so the sum over replicas, which the optimizer takes, is the global mean exactly.

    ``suffix``: read the heads ``<task><suffix>`` (the auxiliary heads) on the same labels;
    a task without such a head gets 0.
    """
    shares = []
    for task in tasks:
        key = task + suffix
        if key not in y_pred:
            shares.append(tf.constant(0.0))
            continue
        weight = sample_weight.get(task) if isinstance(sample_weight, dict) else sample_weight
        total, count = masked_loss_terms(loss_fns[task], y[task], y_pred[key], weight)
        shares.append(tf.math.divide_no_nan(total, replica_sum(tf.stop_gradient(count))))
    return shares


def check_targets(y, model):
    """Returns y as a dict {task: labels}; a ValueError names what is wrong.

    """
    trained = model.trained_tasks
    if not isinstance(y, dict):
        if y is not None and len(trained) == 1:
            return check_targets({trained[0]: y}, model)
        raise ValueError(
            f"`y` must be a dict {{task: labels}} with keys {trained}; got "
            f"{type(y).__name__}. Use NaN for a missing label."
        )
    check_task_keys(
        "y", y, model.task_names, trained,
        "pass them (NaN where a label is missing) or set their loss to None",
    )
    for task in trained:
        if is_text(y[task]):
            raise ValueError(
                f"`y[{task!r}]` must hold numbers (float, int or bool labels, NaN where missing); "
                f"got strings (dtype {y[task].dtype.name}). Map the labels to numbers first."
            )
        if not hasattr(y[task], "shape"):
            continue  # a list: Keras makes it a tensor, which the step checks
        shape = tuple(y[task].shape)
        head = tuple(model.task_output_shapes[task])
        if not _compatible(shape, head):
            raise ValueError(
                f"`y[{task!r}]` must have shape [B], [B, 1] or {_fmt(head)} to match the "
                f"{task!r} head; got {_fmt(shape)}."
            )
    return y


def is_text(value):
    """Whether an array, tensor, Series or TensorSpec holds strings (NumPy object arrays
    only when they hold str or bytes; dtypes TensorFlow does not know are not text)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return False
    if getattr(dtype, "kind", None) == "O":
        flat = np.asarray(value).ravel()
        return flat.size > 0 and isinstance(flat[0], (str, bytes))
    try:
        return tf.as_dtype(dtype) == tf.string
    except TypeError:
        return False


def check_task_keys(argument, given, known, required=(), hint=""):
    """ValueError naming ``argument`` if it has a task not in ``known`` or lacks one of ``required``."""
    unknown = [task for task in given if task not in known]
    if unknown:
        raise ValueError(
            f"`{argument}` names unknown task(s) {unknown}; expected tasks among {list(known)}."
        )
    missing = [task for task in required if task not in given]
    if missing:
        raise ValueError(f"`{argument}` has no entry for task(s) {missing}: {hint}.")


def _compatible(label_shape, head_shape):
    label, head = label_shape[1:], head_shape[1:]
    if label in ((), (1,)):
        return True
    return len(label) == len(head) and all(
        a is None or b is None or a == b for a, b in zip(label, head)
    )


def _fmt(shape):
    return "[" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(shape)) + "]"


def check_class_weight(class_weight, trained):
    """``fit``'s ``class_weight``: {task: {class index: weight}} over trained tasks."""
    if not isinstance(class_weight, dict) or not all(isinstance(v, dict) for v in class_weight.values()):
        raise ValueError(
            "`class_weight` must be a dict {task: {class index: weight}}, e.g. "
            f"{{{trained[0]!r}: {{0: 1.0, 1: 3.0}}}}; got {class_weight!r}."
        )
    check_task_keys("class_weight", class_weight, trained)
    for task, weights in class_weight.items():
        if not weights:
            raise ValueError(f"`class_weight[{task!r}]` is empty; give {{class index: weight}}.")
        for index, weight in weights.items():
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
                raise ValueError(f"`class_weight[{task!r}]` keys must be class indices >= 0; got {index!r}.")
            if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)):
                raise ValueError(f"`class_weight[{task!r}][{index!r}]` must be a number; got {weight!r}.")
    return class_weight


def class_sample_weight(weights, labels):
    """[B] float32 weights of each row's class, as Keras computes them for one output.

    The class is the label rounded ([B] or [B, 1] labels) or the arg-max of a
    one-hot row; a class without an entry, and a missing (NaN) label, weigh 1.
    """
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank is not None and labels.shape.rank > 1 and labels.shape[-1] != 1:
        index = tf.argmax(labels, axis=-1)
    else:
        index = tf.reshape(labels, [-1])
        if index.dtype.is_floating:
            index = tf.where(tf.math.is_nan(index), -tf.ones_like(index), tf.round(index))
        index = tf.cast(index, tf.int64)
    size = int(max(weights)) + 1
    table = tf.constant([float(weights.get(i, 1.0)) for i in range(size)], tf.float32)
    known = (index >= 0) & (index < size)
    return tf.where(known, tf.gather(table, tf.clip_by_value(index, 0, size - 1)), tf.ones(tf.shape(index)))


def with_class_weight(class_weight, trained, y, sample_weight):
    """Per-task sample weights (a dict) with each ``class_weight`` task's class weights
    multiplied in; ``sample_weight`` may be None, one array for every task, or a dict."""
    if not isinstance(y, dict):
        y = {trained[0]: y}
    if isinstance(sample_weight, dict):
        combined = dict(sample_weight)
    elif sample_weight is None:
        combined = {}
    else:
        combined = {task: sample_weight for task in trained}
    for task, weights in class_weight.items():
        weight = class_sample_weight(weights, y[task])
        if combined.get(task) is not None:
            weight = weight * tf.reshape(tf.cast(combined[task], tf.float32), [-1])
        combined[task] = weight
    return combined
