"""census_income(one_hot=False, columns=True) through a FeatureSpec: raw strings in, an MMoE trains."""

import numpy as np

from mtl_keras import datasets, models
from mtl_keras import features as F
from mtl_keras.backend import keras


def test_census_columns_train_an_mmoe_through_a_feature_spec(census_path):
    data = datasets.census_income(census_path, one_hot=False, columns=True)
    x, y = data.train
    assert set(x) == set(data.feature_names)
    assert x["education"].dtype.kind == "U" and x["age"].dtype == np.float32
    spec = F.FeatureSpec([
        F.Numeric(name) if x[name].dtype.kind == "f" else F.Categorical(name, embedding_dim=3)
        for name in data.feature_names
    ])
    spec.adapt(x)
    assert len(spec.features["education"].vocabulary) == len(np.unique(x["education"]))
    model = models.mmoe(spec, list(y), num_experts=2, expert_units=(8,), tower_units=(4,))
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss={t: "binary_crossentropy" for t in y})
    rows = slice(0, 3000)
    history = model.fit(F.prepare_inputs(model, {k: v[rows] for k, v in x.items()}),
                        {t: v[rows] for t, v in y.items()}, batch_size=256, epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
