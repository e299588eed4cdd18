"""fit / evaluate / predict of a FeatureSpec model take NumPy dicts with string columns (Keras 3 refuses
NumPy strings itself): MultiTaskModel routes its arguments through features.prepare_arguments."""

import numpy as np
import pytest

from mtl_keras import MultiTaskModel, datasets, models
from mtl_keras import features as F


def test_prepare_arguments_prepares_x_and_validation_x():
    x, y = datasets.synthetic_recsys(50, seed=0)
    spec = F.FeatureSpec([F.Categorical("device", embedding_dim=2), F.Numeric("price")])
    spec.adapt(x)
    model = models.shared_bottom(spec, ["ctr"], bottom_units=(4,))
    args, kwargs = F.prepare_arguments(model, (x, y), {"validation_data": (x, y)})
    assert args[1] is y and sorted(args[0]) == ["device", "price"]
    assert args[0]["device"].dtype.name == "string"
    assert sorted(kwargs["validation_data"][0]) == ["device", "price"]
    _, kwargs = F.prepare_arguments(model, (), {"x": x})
    assert sorted(kwargs["x"]) == ["device", "price"]


def test_fit_evaluate_predict_take_numpy_string_columns():
    x, y = datasets.synthetic_recsys(300, seed=0)
    spec = F.FeatureSpec(
        [F.Categorical("device", embedding_dim=2), F.Categorical("item_id"), F.Numeric("price")]
    )
    spec.adapt(x)
    model = models.mmoe(spec, ["ctr", "cvr"], num_experts=2, expert_units=(4,))
    model.compile(loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"})
    model.fit(x, {t: y[t] for t in ("ctr", "cvr")}, epochs=1, verbose=0,
              validation_data=(x, {t: y[t] for t in ("ctr", "cvr")}))
    assert np.isfinite(model.evaluate(x, {t: y[t] for t in ("ctr", "cvr")}, verbose=0)).all()
    assert model.predict(x, verbose=0)["cvr"].shape == (300, 1)
    with pytest.raises(ValueError, match="Feature 'device' is missing"):
        model.predict({k: v for k, v in x.items() if k != "device"}, verbose=0)
