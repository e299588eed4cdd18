"""Labels: their checks, and per-task losses where a NaN label means *missing*.

The label dict is checked when the step is traced, so bad labels fail before
any training step executes.

A missing label is masked out of its task's loss: the task loss is the mean
over the labelled rows only, and a batch with no label for a task contributes
zero loss and zero gradient for it. The loss is returned as a (sum, count)
pair so the caller can normalise by the *global* count under tf.distribute.
"""

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


def masked_loss_terms(loss_fn, y_true, y_pred, sample_weight=None):
    """(sum of weighted per-example losses over labelled rows, sum of their weights)."""
    y_true, mask = label_mask(align_labels(y_true, y_pred))
    per_example = tf.cast(loss_fn(y_true, y_pred), tf.float32)
    if per_example.shape.rank > 1:
        per_example = tf.reduce_mean(tf.reshape(per_example, [tf.shape(per_example)[0], -1]), axis=1)
    weight = mask
    if sample_weight is not None:
        weight = weight * tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
    # tf.where keeps a NaN/inf prediction on a masked row out of the sum and its gradient.
    contribution = tf.where(weight > 0, per_example * weight, tf.zeros_like(per_example))
    return tf.reduce_sum(contribution), tf.reduce_sum(weight)


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
        dtype = getattr(y[task], "dtype", None)
        if dtype is not None and not (tf.as_dtype(dtype).is_floating or tf.as_dtype(dtype).is_integer or tf.as_dtype(dtype).is_bool):
            raise ValueError(
                f"`y[{task!r}]` must hold numbers (float, int or bool labels, NaN where missing); "
                f"got dtype {tf.as_dtype(dtype).name}."
            )
        shape = tuple(y[task].shape)
        head = tuple(model.task_output_shapes[task])
        if not _compatible(shape, head):
            raise ValueError(
                f"`y[{task!r}]` must have shape [B], [B, 1] or {_fmt(head)} to match the "
                f"{task!r} head; got {_fmt(shape)}."
            )
    return y


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
