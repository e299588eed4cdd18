"""The sub-batches a projection draws from each batch (SDMGrad's halves, MoDo's thirds).

Sub-batch s of S is the rows i with i mod S = s of this replica's batch, so
under a distribution strategy the global sub-batches are those of one device
whenever the per-replica batch is a multiple of S. Each sub-batch runs its own
forward pass: the per-task backward pass of sub-batch s then covers its B / S
rows only, and the S T backward passes cost what T passes over the whole batch
do. One forward pass over the batch would make each of them a pass over all B
rows (the rows outside the sub-batch with a zero gradient), S times the work
(docs/benchmarks.md, "Sub-batch methods"). As the papers' independent samples,
layers that read across rows (batch normalization) see each sub-batch alone.
"""

from mtl_keras.backend import tf


def split_rows(structure, count):
    """``count`` copies of ``structure`` (nested tensors, ragged or sparse ones, None), copy s
    holding the rows i mod count = s of each tensor.

    Example:
    >>> [part["a"].numpy().tolist() for part in split_rows({"a": tf.range(5)}, 2)]
    [[0, 2, 4], [1, 3]]
    """
    return [tf.nest.map_structure(lambda value: _rows(value, part, count), structure) for part in range(count)]


def join_rows(parts):
    """The inverse of ``split_rows`` up to row order: each tensor's parts concatenated, sub-batch
    by sub-batch (losses and metrics do not depend on the order of the rows)."""
    return tf.nest.map_structure(lambda *values: None if values[0] is None else tf.concat(values, 0), *parts)


def check_batch(structure, count):
    """A ValueError when the batch's static size is below ``count``."""
    for value in tf.nest.flatten(structure):
        rows = None if value is None else value.shape[0]
        if rows is not None and rows < count:
            raise ValueError(
                f"`gradient_projection` draws {count} sub-batches from each batch; got a batch of "
                f"{rows} rows. Use a `batch_size` of at least {count} (a multiple of {count} per replica)."
            )


def _rows(value, part, count):
    if value is None:
        return None
    if isinstance(value, tf.SparseTensor):
        # Row r of the sub-batch is row r * count + part of the batch.
        keep = tf.equal(value.indices[:, 0] % count, part)
        indices = tf.boolean_mask(value.indices, keep)
        indices = tf.concat([indices[:, :1] // count, indices[:, 1:]], axis=1)
        rows = (value.dense_shape[0] - part + count - 1) // count
        return tf.SparseTensor(indices, tf.boolean_mask(value.values, keep),
                               tf.concat([[rows], value.dense_shape[1:]], 0))
    if not isinstance(value, tf.RaggedTensor):
        value = tf.convert_to_tensor(value)
    rows = value.nrows() if isinstance(value, tf.RaggedTensor) else tf.shape(value, out_type=tf.int64)[0]
    return tf.gather(value, tf.range(tf.constant(part, tf.int64), rows, count))
