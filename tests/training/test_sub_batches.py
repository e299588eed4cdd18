"""``training.sub_batches``: the rows i mod S = s of every kind of input a model takes."""

import numpy as np
import pytest

from mtl_keras.backend import tf
from mtl_keras.training.sub_batches import check_batch, join_rows, split_rows


def test_split_takes_the_rows_i_mod_s_of_dense_ragged_and_sparse_inputs():
    dense = np.arange(14, dtype=np.float32).reshape(7, 2)
    ragged = tf.ragged.constant([[0], [1, 1], [], [3], [4, 4, 4], [5], [6, 6]])
    sparse = tf.sparse.from_dense(tf.constant([[0, 1], [2, 0], [0, 0], [3, 4], [0, 5], [6, 0], [7, 7]]))
    batch = {"dense": tf.constant(dense), "ids": ragged, "tags": sparse, "weight": None}
    parts = split_rows(batch, 3)
    for s, part in enumerate(parts):
        np.testing.assert_array_equal(part["dense"].numpy(), dense[s::3])
        assert part["ids"].to_list() == ragged.to_list()[s::3]
        np.testing.assert_array_equal(tf.sparse.to_dense(part["tags"]).numpy(),
                                      tf.sparse.to_dense(sparse).numpy()[s::3])
        assert part["weight"] is None
    joined = join_rows([{"y": p["dense"], "w": None} for p in parts])
    np.testing.assert_array_equal(joined["y"].numpy(), np.concatenate([dense[s::3] for s in range(3)]))
    assert joined["w"] is None


def test_split_runs_under_xla():
    split = tf.function(lambda x: split_rows(x, 2), jit_compile=True)
    parts = split(tf.reshape(tf.range(10.0), (5, 2)))
    np.testing.assert_array_equal(parts[1].numpy(), [[2.0, 3.0], [6.0, 7.0]])


def test_a_batch_smaller_than_the_sub_batches_is_refused():
    with pytest.raises(ValueError, match="draws 3 sub-batches from each batch; got a batch of 2 rows"):
        check_batch({"x": tf.zeros((2, 4))}, 3)
    check_batch({"x": tf.zeros((3, 4)), "w": None}, 3)
