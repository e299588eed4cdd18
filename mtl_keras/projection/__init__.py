"""Gradient projections: a base class (Gram matrix -> coefficients) and one method a module."""

from mtl_keras.core.gram import gram_matrix
from mtl_keras.core.stateful import resolve
from mtl_keras.projection.base import GradientProjection
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
    if identifier is None:
        return None
    return resolve(identifier, "gradient_projection", GradientProjection, BY_NAME, "None or a GradientProjection")


__all__ = ["BY_NAME", "CAGrad", "GradVac", "GradientProjection", "MGDA", "PCGrad", "ParetoEfficient", "get", "gram_matrix"]
