"""Task weightings: a base class and one method a module."""

from mtl_keras.core.stateful import resolve
from mtl_keras.weighting.base import TaskWeighting
from mtl_keras.weighting.dwa import DynamicWeightAverage
from mtl_keras.weighting.excess_mtl import ExcessMTL
from mtl_keras.weighting.famo import FAMO
from mtl_keras.weighting.gls import GeometricLossWeighting
from mtl_keras.weighting.gradnorm import GradNorm
from mtl_keras.weighting.imtl_l import IMTLLossScaling
from mtl_keras.weighting.rlw import RandomLossWeighting
from mtl_keras.weighting.static import StaticWeighting
from mtl_keras.weighting.stch import SmoothTchebycheff
from mtl_keras.weighting.uncertainty import UncertaintyWeighting

# String identifiers, as Keras has for optimizers ("adam").
BY_NAME = {
    "equal": StaticWeighting,
    "uncertainty": UncertaintyWeighting,
    "gradnorm": GradNorm,
    "dwa": DynamicWeightAverage,
    "famo": FAMO,
    "rlw": RandomLossWeighting,
    "gls": GeometricLossWeighting,
    "stch": SmoothTchebycheff,
    "imtl_l": IMTLLossScaling,
    "excess_mtl": ExcessMTL,
}


def get(identifier):
    """The TaskWeighting that compile's ``task_weighting`` names.

    Args:
        identifier: None (equal weights), a name from ``BY_NAME``, a dict of
            floats by task, a serialized config, or a TaskWeighting.

    Returns:
        A ``TaskWeighting`` (not built yet).

    Raises:
        ValueError: for anything else, naming ``task_weighting``.

    Example:
    >>> type(get("uncertainty")).__name__
    'UncertaintyWeighting'
    >>> type(get({"ctr": 1.0, "cvr": 0.5})).__name__
    'StaticWeighting'
    """
    if identifier is None:
        return StaticWeighting()
    if isinstance(identifier, dict) and "class_name" not in identifier:
        return StaticWeighting(identifier)
    return resolve(
        identifier, "task_weighting", TaskWeighting, BY_NAME, "None, a dict of floats by task, or a TaskWeighting"
    )


__all__ = [
    "BY_NAME",
    "DynamicWeightAverage",
    "ExcessMTL",
    "FAMO",
    "GeometricLossWeighting",
    "GradNorm",
    "IMTLLossScaling",
    "RandomLossWeighting",
    "SmoothTchebycheff",
    "StaticWeighting",
    "TaskWeighting",
    "UncertaintyWeighting",
    "get",
]
