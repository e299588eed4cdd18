"""Gradient isolation of per-task embedding tables ("task" and "both"), checked numerically."""

import numpy as np
import pytest

from mtl_keras import datasets, models
from mtl_keras import features as F
from mtl_keras.backend import tf

TASKS = ["ctr", "cvr", "like"]
BUILDERS = {
    "mmoe": lambda s: models.mmoe(s, TASKS, num_experts=2, expert_units=(4,), tower_units=(4,)),
    "ple": lambda s: models.ple(s, TASKS, expert_units=(4,), tower_units=(4,)),
    "cross_stitch": lambda s: models.cross_stitch(s, TASKS, units=(4,), tower_units=(4,)),
}


def spec_and_data():
    x, _ = datasets.synthetic_recsys(64, seed=1, num_users=20, num_items=15, history_length=4)
    spec = F.FeatureSpec(
        [
            F.Numeric("price"),
            F.Categorical("user_id", num_buckets=50, embedding_dim=3),
            F.Categorical("item_id", embedding_dim=3, sharing="both"),
            F.Categorical("device", embedding_dim=2, sharing="task"),
            F.Sequence("clicked_items", embedding_of="item_id", max_length=4),
        ],
        task_features={"cvr": ["item_id", "device", "price"]},
    )
    spec.adapt(x)
    return spec, x


def table(model, name):
    return model.get_layer(name).embeddings


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_a_tasks_loss_reaches_the_shared_table_and_its_own_table_only(builder):
    spec, x = spec_and_data()
    model = BUILDERS[builder](spec)
    feed = F.prepare_inputs(model, x)
    names = ["item_id_embedding", "user_id_embedding"] + [
        f"{feature}_embedding_{task}" for feature in ("item_id", "device") for task in TASKS
    ]
    tables = {name: table(model, name) for name in names}
    for task in TASKS:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(feed, training=True)[task])
        grads = dict(zip(names, tape.gradient(loss, list(tables.values()))))
        # Shared tables reach every task through the shared parts (cvr's too, though its own
        # parts skip user_id); task tables only their task.
        own = {"item_id_embedding", "user_id_embedding", f"item_id_embedding_{task}", f"device_embedding_{task}"}
        for name, grad in grads.items():
            values = 0.0 if grad is None else np.abs(tf.convert_to_tensor(grad).numpy()).sum()
            if name in own:
                assert values > 0, f"{task}'s loss should reach {name}"
            else:
                assert values == 0.0, f"{task}'s loss reached {name}"

    # The same, in values: rewriting another task's tables leaves a task's output exactly as it was.
    before = {t: v.numpy() for t, v in model(feed, training=False).items()}
    for task in ("cvr", "like"):
        for feature in ("item_id", "device"):
            variable = table(model, f"{feature}_embedding_{task}")
            variable.assign(np.random.default_rng(0).normal(size=variable.shape).astype("float32"))
    after = {t: v.numpy() for t, v in model(feed, training=False).items()}
    np.testing.assert_array_equal(after["ctr"], before["ctr"])
    assert np.abs(after["cvr"] - before["cvr"]).max() > 1e-4

    shared_ids = {id(v) for v in model.shared_variables}
    assert id(table(model, "item_id_embedding")) in shared_ids
    assert id(table(model, "user_id_embedding")) in shared_ids
    for name in names[2:]:
        assert id(tables[name]) not in shared_ids, name


def test_mmoe_gates_read_their_tasks_features():
    """cvr's gate reads cvr's shared features (item_id's shared table 3 + price 1); ctr and like,
    which name no subset, read every shared feature; the experts read the union."""
    spec, _ = spec_and_data()
    model = BUILDERS["mmoe"](spec)
    widths = [int(kernel.shape[0]) for kernel in model.get_layer("mmoe").gate_kernels]
    union = int(model.get_layer("mmoe").experts.kernels[0].shape[1])
    assert widths == [union, 4, union] and union > 4
