"""Gradient projections: a base class (Gram matrix -> coefficients) and one method a module."""

from mtl_keras.backend import keras
from mtl_keras.projection.base import GradientProjection, gram_matrix
from mtl_keras.projection.cagrad import CAGrad
from mtl_keras.projection.gradvac import GradVac
from mtl_keras.projection.mgda import MGDA
from mtl_keras.projection.pareto import ParetoEfficient
from mtl_keras.projection.pcgrad import PCGrad

# String identifiers, as Keras has for optimizers ("adam").
BY_NAME = {
    "pcgrad": PCGrad,
    "gradvac": GradVac,
    "mgda": MGDA,
    "cagrad": CAGrad,
    "pareto": ParetoEfficient,
}


def get(identifier):
    """None, a name from ``BY_NAME``, a serialized config, or a GradientProjection."""
    if identifier is None or isinstance(identifier, GradientProjection):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() not in BY_NAME:
            raise ValueError(
                f"`gradient_projection` {identifier!r} is not a known projection; expected one of "
                f"{sorted(BY_NAME)}, or a GradientProjection."
            )
        return BY_NAME[identifier.lower()]()
    if isinstance(identifier, dict) and "class_name" in identifier:
        value = keras.saving.deserialize_keras_object(identifier)
        if isinstance(value, GradientProjection):
            return value
    raise ValueError(
        "`gradient_projection` must be None, a name among "
        f"{sorted(BY_NAME)}, or a GradientProjection; got {identifier!r}."
    )


__all__ = ["BY_NAME", "CAGrad", "GradVac", "GradientProjection", "MGDA", "PCGrad", "ParetoEfficient", "get", "gram_matrix"]
