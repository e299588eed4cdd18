"""The one place that decides which Keras mtl_keras runs on.

TensorFlow reads ``TF_USE_LEGACY_KERAS`` to point ``tf.keras`` at tf_keras;
we follow the same switch so that a process mixing TFRS (tf_keras only) and
mtl_keras sees a single Keras. Every other module imports ``keras`` from here.
"""

import os

# Before anything compiles: XLA reads its flags once per process, at the first compilation.
XLA_SCHEDULER_FLAG = "xla_cpu_enable_concurrency_optimized_scheduler"


def sequential_xla_cpu_schedule(environ=os.environ):
    """Turns XLA's concurrency-optimised CPU scheduler off unless ``XLA_FLAGS`` already sets it.

    That scheduler orders a compiled step so independent operations run side
    by side; each large matmul then splits over every core while another does
    the same, and on a 2-core machine the per-task backward passes of
    ``projection_mode="exact"`` took 3.3x an equal step instead of 2.2x (their
    FLOPs), a fast projection whose coefficients ignore the Gram matrix 1.7x
    instead of 1.1x (docs/benchmarks.md, "Why the defaults"). Set
    ``XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=true`` before
    importing mtl_keras to keep XLA's default. Like every XLA flag it holds for
    the whole process, and only if nothing was compiled with XLA before.

    Example:
    >>> environ = {"XLA_FLAGS": "--xla_dump_to=/tmp/hlo"}
    >>> sequential_xla_cpu_schedule(environ)
    >>> environ["XLA_FLAGS"]
    '--xla_dump_to=/tmp/hlo --xla_cpu_enable_concurrency_optimized_scheduler=false'
    """
    flags = environ.get("XLA_FLAGS", "")
    if XLA_SCHEDULER_FLAG not in flags:
        environ["XLA_FLAGS"] = f"{flags} --{XLA_SCHEDULER_FLAG}=false".strip()


sequential_xla_cpu_schedule()

import tensorflow as tf  # noqa: E402  (after the XLA flag)

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


# Private TensorFlow/Keras/TFRS names: this module is the only one that touches them, so an
# upgrade that moves one breaks here, in one place (a test greps the rest of the package).

# Trackable without being a Keras layer: checkpoints and SavedModels follow its attributes,
# Keras's weight tracking does not (training state must not be one of ``model.weights``).
AutoTrackable = tf.__internal__.tracking.AutoTrackable


def all_layers(layer, include_self=False):
    """Every layer under ``layer``, nested ones included, in Keras's own order."""
    return list(layer._flatten_layers(include_self=include_self, recursive=True))


def is_layer_graph(model):
    """Whether ``model`` is a functional or ``Sequential`` model, whose call only runs its layers
    (a subclassed model's own ``call`` may do any tensor work)."""
    if isinstance(model, keras.Sequential):
        return True
    if IS_KERAS3:
        from keras.src.models.functional import Functional

        return isinstance(model, Functional)
    return bool(getattr(model, "_is_graph_network", False))


def first_call_arguments(layer):
    """(args, kwargs) of a layer's first call in a functional model (Keras tensors)."""
    if IS_KERAS3:
        arguments = layer._inbound_nodes[0].arguments
        return tuple(arguments.args), dict(arguments.kwargs)
    node = layer.inbound_nodes[0]
    return tuple(node.call_args), dict(node.call_kwargs)


def op_determinism_enabled():
    """Whether ``tf.config.experimental.enable_op_determinism()`` is on (its getter is not public)."""
    from tensorflow.python.framework import config

    return config.is_op_determinism_enabled()


def in_xla_context():
    """Whether the op being built will be compiled by XLA (a ``jit_compile`` function, nested or
    not): TensorFlow's own test of it; False on a TensorFlow without it."""
    try:
        from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
    except ImportError:  # pragma: no cover - the broadcast forms everywhere
        return False
    return GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def strategy_supports_no_merge_call():
    """Whether the current strategy lets a replica apply updates without a merge call."""
    return tf.__internal__.distribute.strategy_supports_no_merge_call()


def create_optimizer_slots(optimizer, variables):
    """A tf_keras legacy optimizer's slots for ``variables`` (it has no public ``build``)."""
    optimizer._create_all_weights(variables)


def saved_training_config(model):
    """The training config a tf_keras SavedModel was saved with (a revived model's metadata)."""
    return model._serialized_attributes["metadata"]["training_config"]


def tfrs_task_loss(task):
    """The Keras loss a TFRS ``Ranking`` task computes (TFRS keeps it private), or None."""
    return getattr(task, "_loss", None)


def tflite_schema():
    """TensorFlow Lite's flatbuffer schema module (shipped with TensorFlow, not public)."""
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


__all__ = [
    "keras", "tf", "IS_KERAS3", "USE_LEGACY_KERAS", "register", "state_variable", "to_tensor",
    "AutoTrackable", "all_layers", "first_call_arguments", "op_determinism_enabled", "in_xla_context",
    "strategy_supports_no_merge_call", "create_optimizer_slots", "saved_training_config",
    "tfrs_task_loss", "tflite_schema",
]
