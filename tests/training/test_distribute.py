"""MultiTaskModel under MirroredStrategy equals one device for the same global batch.

Two logical CPUs must be configured before TensorFlow starts, so the cases run in
a fresh interpreter, all in one to pay TensorFlow's start-up once.
"""

import json
import textwrap

import pytest

from conftest import run_tensorflow_script

# CI runs one case of each kind (a static weighting, a Gram projection exact and fast, a learnt
# weighting whose gradients are summed over replicas); `make reliability` the others (slow).
GROUPS = [
    ["plain", "feature_spec", "pcgrad", "gradnorm", "pcgrad_fast"],
    pytest.param(["mgda", "cagrad", "uncertainty"], marks=pytest.mark.slow),
]
# Projections that need more than the Gram matrix: [T, P] state (DB-MTL), masks at the
# representation (GradDrop), sub-batches (SDMGrad) in CI; MoCo, RGW and MoDo slow.
BEYOND_GRAM = [["db_mtl", "graddrop_fast", "sdmgrad"], pytest.param(["moco", "rgw", "modo"], marks=pytest.mark.slow)]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    if sys.argv[1:] != ["one_device_mirrored"]:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mtl_keras import features as F, losses, models
    from mtl_keras.backend import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] - x[:, :1] > 0).astype("float32")}
    # Unequal missing labels across the replicas' halves: the global mean must use the global count.
    y["cvr"][:10] = np.nan
    y["ctr"][60:64] = np.nan
    # A FeatureSpec's string and id columns (lookups and embeddings inside the model).
    spec_x = {"price": x[:, 0], "user_id": rng.choice([3, 5, 8], len(x)), "device": rng.choice(["ios", "web"], len(x))}

    def spec_mmoe(inputs, tasks):
        spec = F.FeatureSpec([F.Numeric("price", mean=0.0, variance=1.0),
                              F.Categorical("user_id", vocabulary=[3, 5, 8]),
                              F.Categorical("device", vocabulary=["ios", "web"])])
        return models.mmoe(spec, tasks, num_experts=3)

    CASES = {
        "plain": lambda: dict(task_weighting={"cvr": 2.0}),
        "feature_spec": lambda: dict(task_weighting={"cvr": 2.0}, builder=spec_mmoe),
        "pcgrad": lambda: dict(gradient_projection=losses.PCGrad(seed=1)),
        "mgda": lambda: dict(gradient_projection=losses.MGDA()),
        "cagrad": lambda: dict(gradient_projection=losses.CAGrad()),
        "uncertainty": lambda: dict(task_weighting=losses.UncertaintyWeighting()),
        "gradnorm": lambda: dict(task_weighting=losses.GradNorm(learning_rate=0.1)),
        "pcgrad_fast": lambda: dict(gradient_projection=losses.PCGrad(seed=1), projection_mode="fast"),
        "db_mtl": lambda: dict(gradient_projection=losses.DBMTL()),
        "moco": lambda: dict(gradient_projection=losses.MoCo()),
        "rgw": lambda: dict(gradient_projection=losses.RandomGradientWeighting(seed=2)),
        # PLE: its nested levels take GradDrop's pass from the losses plus the masks' changes.
        "graddrop_fast": lambda: dict(gradient_projection=losses.GradDrop(seed=2), projection_mode="fast",
                                      builder=lambda x, tasks: models.ple(x, tasks, num_shared_experts=2)),
        "sdmgrad": lambda: dict(gradient_projection=losses.SDMGrad()),
        "modo": lambda: dict(gradient_projection=losses.MoDo(gamma=0.1), batch_size=24),
    }

    def train(strategy, options):
        # Sub-batches (rows i mod S) are one device's when every replica's batch is a multiple of S.
        batch_size = options.pop("batch_size", 16)
        builder = options.pop("builder", lambda x, tasks: models.mmoe(x, tasks, num_experts=3))
        rows = len(x) // batch_size * batch_size
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = builder(keras.Input((6,), name="x"), ["ctr", "cvr"])
            model.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"},
                          jit_compile=False, **options)
        features = spec_x if builder is spec_mmoe else x
        history = model.fit({k: v[:rows] for k, v in features.items()} if isinstance(features, dict) else x[:rows],
                            {t: v[:rows] for t, v in y.items()}, batch_size=batch_size,
                            epochs=1, shuffle=False, verbose=0)  # 5 steps (3 with sub-batches of 3)
        if builder is spec_mmoe:  # evaluate and predict build from the first batch as fit does
            model.evaluate(spec_x, y, batch_size=batch_size, verbose=0)
            model.predict(spec_x, batch_size=batch_size, verbose=0)
        state = [np.array(v) for v in model.trainable_variables]
        weighting = model.training_state.weighting
        state += [np.array(v) for v in getattr(weighting, "trainable_variables", ())]
        if hasattr(weighting, "task_weights"):
            state.append(np.array(weighting.task_weights))
        return state, history.history

    def compare(strategy, names):
        # Each case on one device and under `strategy`: the largest differences.
        report = {}
        for name in names:
            single, h1 = train(tf.distribute.OneDeviceStrategy("/cpu:0"), CASES[name]())
            other, h2 = train(strategy, CASES[name]())
            report[name] = {
                "weights": max(float(np.max(np.abs(a - b))) for a, b in zip(single, other)),
                "loss": float(np.max(np.abs(np.array(h1["loss"]) - np.array(h2["loss"])))),
            }
        return report

    if sys.argv[1:] == ["one_device_mirrored"]:
        # The default strategy of a CPU-only or one-GPU machine: MirroredStrategy() on one
        # device (its own process: two MirroredStrategy objects would share collective keys).
        default_strategy = tf.distribute.MirroredStrategy()
        assert default_strategy.num_replicas_in_sync == 1
        report = compare(default_strategy, ("plain", "pcgrad", "pcgrad_fast"))
    else:
        # One strategy object for all cases: two in a process can reuse collective instance keys.
        report = compare(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), sys.argv[1:])
    print("REPORT" + json.dumps(report))
    """
)


def run_cases(*cases):
    result = run_tensorflow_script(SCRIPT, *cases)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.split("REPORT", 1)[1])


def assert_equal_runs(report, cases):
    assert sorted(report) == sorted(cases)
    for name, diff in report.items():
        assert diff["weights"] < 1e-5, (name, diff)
        assert diff["loss"] < 1e-5, (name, diff)


@pytest.mark.parametrize("cases", GROUPS, ids=["ci", "more"])
def test_mirrored_strategy_equals_one_device(cases):
    assert_equal_runs(run_cases(*cases), cases)


@pytest.mark.parametrize("cases", BEYOND_GRAM, ids=["ci", "more"])
def test_mirrored_strategy_equals_one_device_beyond_the_gram_matrix(cases):
    assert_equal_runs(run_cases(*cases), cases)


def test_default_mirrored_strategy_on_one_device():
    """``MirroredStrategy()`` with its defaults, model built and compiled in its scope."""
    assert_equal_runs(run_cases("one_device_mirrored"), ["plain", "pcgrad", "pcgrad_fast"])
