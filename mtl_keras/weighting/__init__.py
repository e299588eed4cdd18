"""Task weightings: a base class and one method a module."""

from mtl_keras.backend import keras
from mtl_keras.weighting.base import TaskWeighting
from mtl_keras.weighting.dwa import DynamicWeightAverage
from mtl_keras.weighting.gradnorm import GradNorm
from mtl_keras.weighting.static import StaticWeighting
from mtl_keras.weighting.uncertainty import UncertaintyWeighting

# String identifiers, as Keras has for optimizers ("adam").
BY_NAME = {
    "equal": StaticWeighting,
    "uncertainty": UncertaintyWeighting,
    "gradnorm": GradNorm,
    "dwa": DynamicWeightAverage,
}


def get(identifier):
    """None (equal weights), a name from ``BY_NAME``, a dict of floats by task,
    a serialized config, or a TaskWeighting."""
    if identifier is None:
        return StaticWeighting()
    if isinstance(identifier, TaskWeighting):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in BY_NAME:
            raise ValueError(
                f"`task_weighting` {identifier!r} is not a known weighting; expected one of "
                f"{sorted(BY_NAME)}, a dict of floats by task, or a TaskWeighting."
            )
        return BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and "class_name" in identifier:
        value = keras.saving.deserialize_keras_object(identifier)
        if isinstance(value, TaskWeighting):
            return value
    elif isinstance(identifier, dict):
        return StaticWeighting(identifier)
    raise ValueError(
        "`task_weighting` must be None, a name among "
        f"{sorted(BY_NAME)}, a dict of floats by task, or a TaskWeighting; got {identifier!r}."
    )


__all__ = ["BY_NAME", "DynamicWeightAverage", "GradNorm", "StaticWeighting", "TaskWeighting", "UncertaintyWeighting", "get"]
