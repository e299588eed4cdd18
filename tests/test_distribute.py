"""MultiTaskModel under MirroredStrategy equals one device for the same global batch.

Two logical CPUs must be configured before TensorFlow starts, so each case runs in a
fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from mtl_keras import models
    from mtl_keras.backend import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = {"ctr": (x[:, :1] > 0).astype("float32"), "cvr": (x[:, 1:2] > 0).astype("float32")}
    # Unequal missing labels per replica half: the global mean must use the global count.
    y["cvr"][:24] = np.nan
    y["ctr"][40:44] = np.nan

    def train(strategy):
        keras.utils.set_random_seed(3)
        with strategy.scope():
            model = models.mmoe(keras.Input((6,), name="x"), ["ctr", "cvr"], num_experts=3)
            model.compile(optimizer=keras.optimizers.SGD(0.5),
                          loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"},
                          task_weighting={"cvr": 2.0}, jit_compile=False)
        history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
        return [np.array(v) for v in model.trainable_variables], history.history

    single, h1 = train(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored, h2 = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(single, mirrored))
    print("max weight difference", worst)
    print("losses", h1["cvr_loss"], h2["cvr_loss"])
    assert worst < 1e-5, worst
    assert np.allclose(h1["cvr_loss"], h2["cvr_loss"], atol=1e-5)
    assert np.allclose(h1["loss"], h2["loss"], atol=1e-5)
    """
)


def test_mirrored_strategy_equals_one_device():
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "max weight difference" in result.stdout
