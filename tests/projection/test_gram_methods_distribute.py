"""IMTL, Nash-MTL, Aligned-MTL, UPGrad and FairGrad under MirroredStrategy on 2 logical CPUs equal one device.

Two logical CPUs must be configured before TensorFlow starts: the runs are in a
fresh interpreter, a group of methods in one to pay TensorFlow's start-up once. CI runs
IMTL and Nash-MTL (its kept weights and step counter); the other three are slow cases.
"""

import json
import textwrap

import numpy as np
import pytest

from conftest import run_tensorflow_script

GROUPS = [["imtl", "nash_mtl"], pytest.param(["aligned_mtl", "upgrad", "fairgrad"], marks=pytest.mark.slow)]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mtl_keras import datasets, losses, models
    from mtl_keras.backend import keras

    x, y = datasets.synthetic_tasks(64, correlation=0.3, dim=8, seed=2)
    y["task2"][:6] = np.nan  # missing labels on one replica's half only: global means must use global counts

    def train(strategy, name):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = models.shared_bottom(keras.Input((8,), name="x"), ["task1", "task2"], bottom_units=(8,),
                                         tower_units=(4,), task_types="regression")
            # Nash-MTL updating every other step: its kept weights and step counter take part.
            projection = losses.NashMTL(update_weights_every=2) if name == "nash_mtl" else name
            model.compile(optimizer=keras.optimizers.SGD(0.05), loss={"task1": "mse", "task2": "mse"},
                          gradient_projection=projection, jit_compile=False)
        history = model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)  # 4 steps
        state = [np.array(v) for v in model.trainable_variables]
        state += [np.array(v) for v in model.training_state.projection.state_variables.values()]
        return state, history.history["loss"]

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {}
    for name in sys.argv[1:]:
        single, loss1 = train(tf.distribute.OneDeviceStrategy("/cpu:0"), name)
        both, loss2 = train(mirrored, name)
        report[name] = {
            "weights": max(float(np.max(np.abs(a - b))) for a, b in zip(single, both)),
            "loss": float(np.max(np.abs(np.array(loss1) - np.array(loss2)))),
            "state": len(single),
        }
    print("REPORT" + json.dumps(report))
    """
)


@pytest.mark.parametrize("methods", GROUPS, ids=["imtl-nash_mtl", "aligned_mtl-upgrad-fairgrad"])
def test_mirrored_strategy_equals_one_device(methods):
    result = run_tensorflow_script(SCRIPT, *methods)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.split("REPORT", 1)[1])
    assert sorted(report) == sorted(methods)
    for name, diff in report.items():
        assert diff["weights"] < 1e-5 and diff["loss"] < 1e-5, (name, diff)
    if "nash_mtl" in report:
        assert report["nash_mtl"]["state"] == report["imtl"]["state"] + 2  # its weights and step compared too
    assert np.isfinite([d["loss"] for d in report.values()]).all()
