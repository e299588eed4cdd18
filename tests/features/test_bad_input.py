"""Bad input: each error is a ValueError naming the feature (or task) and what was expected;
unseen ids at serving time go to the OOV row."""

import numpy as np
import pytest

from mtl_keras import features as F
from mtl_keras import models
from mtl_keras.backend import keras, tf


def spec(**kwargs):
    return F.FeatureSpec(
        [F.Numeric("price", mean=0.0, variance=1.0),
         F.Categorical("user_id", vocabulary=[3, 5, 8]),
         F.Categorical("device", vocabulary=["ios", "web"]),
         F.Sequence("clicks", embedding_of="user_id", max_length=2)],
        **kwargs,
    )


def feed():
    return {"price": np.array([1.0, 2.0]), "user_id": np.array([3, 8]), "device": np.array(["ios", "tv"]),
            "clicks": np.array([[3, 5, 8], [5, -1, -1]])}


def test_task_features_naming_a_missing_feature():
    with pytest.raises(ValueError, match=r"task_features\['cvr'\].*'age'.*spec lacks"):
        spec(task_features={"cvr": ["price", "age"]})


def test_task_features_naming_a_task_the_model_lacks():
    with pytest.raises(ValueError, match=r"task 'like'.*model lacks.*\['ctr', 'cvr'\]"):
        models.mmoe(spec(task_features={"like": ["price"]}), ["ctr", "cvr"], num_experts=2)


@pytest.fixture
def model():
    views = spec().views(["t"])
    return keras.Model(views.inputs, views.shared)


def test_strings_fed_to_an_int_feature(model):
    with pytest.raises(ValueError, match=r"Feature 'user_id' expects int64 ids; got dtype <U"):
        F.prepare_inputs(model, dict(feed(), user_id=np.array(["3", "8"])))
    with pytest.raises(ValueError, match=r"Feature 'device' expects strings"):
        F.prepare_inputs(model, dict(feed(), device=np.array([1, 2])))
    with pytest.raises(ValueError, match=r"Feature 'price' expects numbers"):
        F.prepare_inputs(model, dict(feed(), price=np.array(["a", "b"])))


def test_negative_ids(model):
    with pytest.raises(ValueError, match=r"Feature 'user_id' expects ids >= 0 \(-1: missing, the OOV row\); got -4"):
        F.prepare_inputs(model, dict(feed(), user_id=np.array([3, -4])))
    with pytest.raises(ValueError, match=r"Feature 'clicks' expects ids >= 0 \(-1 pads a sequence\); got -2"):
        F.prepare_inputs(model, dict(feed(), clicks=np.array([[3, -2]])))
    with pytest.raises(ValueError, match=r"Feature 'user_id' expects ids >= 0"):
        F.FeatureSpec([F.Categorical("user_id")]).adapt({"user_id": np.array([1, -2])})
    spec = F.FeatureSpec([F.Categorical("user_id")])
    spec.adapt({"user_id": np.array([1, -1])})  # -1: missing, never in the vocabulary
    assert spec.features["user_id"].vocabulary == [1]


def test_a_missing_feature(model):
    x = feed()
    del x["device"]
    with pytest.raises(ValueError, match=r"Feature 'device' is missing.*string categorical"):
        F.prepare_inputs(model, x)
    with pytest.raises(ValueError, match=r"Feature 'device' is missing from the `adapt` data"):
        F.FeatureSpec([F.Categorical("device")]).adapt({"user": np.array([1])})


def test_adapt_on_empty_input():
    with pytest.raises(ValueError, match=r"Feature 'device': `adapt` needs at least one id"):
        F.FeatureSpec([F.Categorical("device")]).adapt({"device": np.array([], str)})
    with pytest.raises(ValueError, match=r"Feature 'price': `adapt` needs at least one value"):
        F.FeatureSpec([F.Numeric("price")]).adapt({"price": np.zeros(0)})
    with pytest.raises(ValueError, match=r"empty input"):
        F.FeatureSpec([F.Numeric("price")]).adapt(tf.data.Dataset.from_tensor_slices({"price": np.zeros(0)}).batch(2))


def test_unseen_ids_and_long_sequences_are_no_error(model):
    """Unseen ids (and negative ones that reach the graph) read the OOV row; rows past max_length are cut."""
    out = model(F.prepare_inputs(model, feed())).numpy()
    oov = model.get_layer("device_embedding").embeddings.numpy()[0]
    # Columns: price, user_id (8), device (8), clicks (8); "tv" is not in device's vocabulary.
    np.testing.assert_allclose(out[1, 9:17], oov, rtol=1e-6)
    raw = {k: tf.constant(v) for k, v in feed().items()}
    raw["user_id"] = tf.constant([-7, 123], tf.int64)
    unseen = model(raw).numpy()
    user_oov = model.get_layer("user_id_embedding").embeddings.numpy()[0]
    np.testing.assert_allclose(unseen[:, 1:9], [user_oov, user_oov], rtol=1e-6)
    longer = dict(feed(), clicks=np.array([[3, 5, 8, 8, 8, 3], [5, -1, -1, -1, -1, -1]]))
    np.testing.assert_array_equal(model(F.prepare_inputs(model, longer)).numpy(), out)
