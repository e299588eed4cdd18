"""The FeatureSpec of ``mtl_keras.datasets.synthetic_recsys``'s columns, adapted on its rows."""

from mtl_keras import datasets
from mtl_keras.features.categorical import Categorical
from mtl_keras.features.numeric import Numeric
from mtl_keras.features.sequence import Sequence
from mtl_keras.features.spec import FeatureSpec


def synthetic_recsys_spec(x):
    """Every column shared by the tasks: ids with learnt vocabularies, the device from its known
    values, the click history pooled from the item table; ``x``: the rows to adapt on."""
    spec = FeatureSpec([
        Numeric("price"),
        Categorical("user_id", embedding_dim=8),
        Categorical("item_id", embedding_dim=8),
        Categorical("category", embedding_dim=4),
        Categorical("device", vocabulary=list(datasets.DEVICES), embedding_dim=2),
        Sequence("clicked_items", embedding_of="item_id", max_length=20),
    ])
    spec.adapt(x)
    return spec
