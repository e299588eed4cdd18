"""The one place that decides which Keras mtl_keras runs on.

TensorFlow reads ``TF_USE_LEGACY_KERAS`` to point ``tf.keras`` at tf_keras;
we follow the same switch so that a process mixing TFRS (tf_keras only) and
mtl_keras sees a single Keras. Every other module imports ``keras`` from here.
"""

import os

import tensorflow as tf

# The same spellings TensorFlow accepts for the variable.
USE_LEGACY_KERAS = os.environ.get("TF_USE_LEGACY_KERAS", "") in ("1", "true", "True")

if USE_LEGACY_KERAS:
    import tf_keras as keras
else:
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ImportError(
            "mtl_keras needs the TensorFlow backend of Keras 3; "
            f"KERAS_BACKEND is {keras.backend.backend()!r}, expected 'tensorflow'."
        )

IS_KERAS3 = not USE_LEGACY_KERAS
PACKAGE = "mtl_keras"


def register(cls):
    """Registers a layer or model class so `.keras` files load without custom_objects."""
    return keras.utils.register_keras_serializable(package=PACKAGE)(cls)


def to_tensor(value):
    """A tf.Tensor from a tensor or a Keras 3 variable (list-taking tf ops reject the latter)."""
    return tf.convert_to_tensor(value)



def state_variable(initial_value, name, trainable=False):
    """A variable for training state that lives outside the model's layers.

    Non-trainable state is computed identically on every replica (from
    all-reduced values), so under tf.distribute the first replica's write is
    kept. Trainable state goes through the optimizer, which needs a Keras 3
    variable under Keras 3.
    """
    if IS_KERAS3:
        return keras.Variable(
            initial_value,
            trainable=trainable,
            name=name,
            aggregation="none" if trainable else "only_first_replica",
        )
    return tf.Variable(
        initial_value,
        trainable=trainable,
        name=name,
        aggregation=tf.VariableAggregation.NONE
        if trainable
        else tf.VariableAggregation.ONLY_FIRST_REPLICA,
    )


__all__ = ["keras", "tf", "IS_KERAS3", "USE_LEGACY_KERAS", "register", "state_variable", "to_tensor"]
