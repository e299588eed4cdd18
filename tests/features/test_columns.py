"""Feature columns and their layers against NumPy: lookups, OOV, hashing, pooling, normalisation, adapt."""

import numpy as np
import pytest

from mtl_keras import features as F
from mtl_keras.backend import keras, tf


def test_string_and_int_lookups_map_known_ids_after_the_oov_rows_and_unknown_ids_to_oov():
    lookup = F.IdLookup("string", vocabulary=["ios", "android", "web"], num_oov_buckets=2)
    got = lookup(tf.constant(["web", "ios", "tv", ""])).numpy()
    np.testing.assert_array_equal(got[:2], [2 + 2, 2 + 0])
    assert set(got[2:]) <= {0, 1} and lookup.size == 5
    ints = F.IdLookup("int64", vocabulary=[40, 7, 12])
    np.testing.assert_array_equal(ints(tf.constant([7, 12, 99, -5], tf.int64)).numpy(), [2, 3, 0, 0])


def test_hashed_ids_are_farmhash_buckets_the_same_for_an_int_and_its_string():
    lookup = F.IdLookup("int64", num_buckets=1000)
    ids = np.array([0, 5, 123456789, 10**12], np.int64)
    expected = tf.strings.to_hash_bucket_fast([str(v) for v in ids], 1000).numpy()
    np.testing.assert_array_equal(lookup(tf.constant(ids)).numpy(), expected)
    as_strings = F.IdLookup("string", num_buckets=1000)(tf.constant([str(v) for v in ids]))
    np.testing.assert_array_equal(as_strings.numpy(), expected)


@pytest.mark.parametrize("combiner", ["mean", "sum", "sqrtn"])
def test_sequence_pooling_skips_padding(combiner):
    rng = np.random.default_rng(0)
    embedded = rng.normal(size=(3, 4, 2)).astype("float32")
    ids = np.array([[3, 1, -1, -1], [5, 6, 7, 8], [-1, -1, -1, -1]], np.int64)
    got = F.SequencePooling(combiner, "int64")([tf.constant(embedded), tf.constant(ids)]).numpy()
    valid = (ids != -1)[:, :, None]
    total, count = (embedded * valid).sum(1), valid.sum(1)
    expected = {"sum": total, "mean": total / np.maximum(count, 1), "sqrtn": total / np.sqrt(np.maximum(count, 1))}
    np.testing.assert_allclose(got, expected[combiner], rtol=1e-6)


def data():
    rng = np.random.default_rng(0)
    return {
        "price": rng.lognormal(3, 1, 50).astype("float32"),
        "device": rng.choice(["ios", "android", "web"], 50, p=[0.6, 0.3, 0.1]),
        "item_id": rng.integers(0, 9, 50),
        "clicks": np.where(rng.random((50, 6)) < 0.4, -1, rng.integers(0, 12, (50, 6))),
    }


def make_spec():
    return F.FeatureSpec([
        F.Numeric("price"),
        F.Categorical("device", embedding_dim=2),
        F.Categorical("item_id", embedding_dim=3),
        F.Sequence("clicks", embedding_of="item_id", max_length=3, combiner="sum"),
    ])


def test_adapt_learns_statistics_and_vocabularies_most_frequent_first_from_dicts_and_datasets():
    x = data()
    spec = make_spec()
    spec.adapt(x)
    assert spec.features["price"].mean[0] == pytest.approx(x["price"].mean(), rel=1e-5)
    assert spec.features["price"].variance[0] == pytest.approx(x["price"].var(), rel=1e-4)
    values, counts = np.unique(x["device"], return_counts=True)
    assert spec.features["device"].vocabulary == list(values[np.argsort(-counts, kind="stable")])
    item_ids = np.concatenate([x["item_id"], x["clicks"].ravel()])
    assert set(spec.features["item_id"].vocabulary) == set(item_ids[item_ids >= 0].tolist())
    assert spec.features["clicks"].value_dtype == "int64" and spec.features["device"].value_dtype == "string"
    again = make_spec()
    again.adapt(tf.data.Dataset.from_tensor_slices(x).batch(7))
    assert again.features["device"].vocabulary == spec.features["device"].vocabulary
    assert again.features["item_id"].vocabulary == spec.features["item_id"].vocabulary
    assert again.features["price"].mean[0] == pytest.approx(spec.features["price"].mean[0], rel=1e-5)


def test_a_spec_model_reads_normalised_values_pooled_truncated_sequences_and_round_trips(tmp_path):
    x = data()
    spec = make_spec()
    spec.adapt(x)
    views = spec.views(["t"])
    model = keras.Model(views.inputs, views.shared)
    feed = F.prepare_inputs(model, x)
    out = model(feed).numpy()
    names = [layer.name for layer in model.layers]
    price = (x["price"] - x["price"].mean()) / np.sqrt(x["price"].var())
    np.testing.assert_allclose(out[:, 0], price, rtol=1e-4, atol=1e-4)
    device_table = model.get_layer("device_embedding").embeddings.numpy()
    device_rows = [spec.features["device"].vocabulary.index(d) + 1 for d in x["device"]]
    np.testing.assert_allclose(out[:, 1:3], device_table[device_rows], rtol=1e-6)
    item_table = model.get_layer("item_id_embedding").embeddings.numpy()
    vocabulary = spec.features["item_id"].vocabulary
    np.testing.assert_allclose(out[:, 3:6], item_table[[vocabulary.index(i) + 1 for i in x["item_id"]]], rtol=1e-6)
    kept = x["clicks"][:, :3]  # max_length 3: the rest of each row is not read
    pooled = np.stack([item_table[[vocabulary.index(i) + 1 for i in row if i >= 0]].sum(0) if (row >= 0).any()
                       else np.zeros(3) for row in kept])
    np.testing.assert_allclose(out[:, 6:9], pooled, rtol=1e-5, atol=1e-6)
    assert "clicks_pooling" in names
    path = str(tmp_path / "m.keras")
    model.save(path)
    revived = keras.models.load_model(path)
    np.testing.assert_array_equal(revived(feed).numpy(), out)


def test_ragged_sequences_equal_their_padded_form():
    x = data()
    spec = make_spec()
    spec.adapt(x)
    views = spec.views(["t"])
    model = keras.Model(views.inputs, views.shared)
    ragged = dict(x, clicks=[[int(v) for v in row if v >= 0] for row in x["clicks"]])
    padded = dict(x, clicks=np.array([sorted(r, key=lambda v: v < 0) for r in x["clicks"]]))
    ragged_ = model(F.prepare_inputs(model, ragged)).numpy()
    np.testing.assert_allclose(ragged_, model(F.prepare_inputs(model, padded)).numpy(), rtol=1e-6)
    ragged_tensor = dict(x, clicks=tf.ragged.constant(ragged["clicks"], dtype=tf.int64))
    np.testing.assert_allclose(model(F.prepare_inputs(model, ragged_tensor)).numpy(), ragged_, rtol=1e-6)
