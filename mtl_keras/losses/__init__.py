"""The public namespace of task weightings and gradient projections.

The methods live in ``mtl_keras.weighting`` and ``mtl_keras.projection``, one a module.
"""

from mtl_keras.projection import (
    MGDA,
    CAGrad,
    GradientProjection,
    GradVac,
    ParetoEfficient,
    PCGrad,
)
from mtl_keras.weighting import (
    FAMO,
    DynamicWeightAverage,
    ExcessMTL,
    GeometricLossWeighting,
    GradNorm,
    IMTLLossScaling,
    RandomLossWeighting,
    SmoothTchebycheff,
    StaticWeighting,
    TaskWeighting,
    UncertaintyWeighting,
)

__all__ = [
    "CAGrad",
    "DynamicWeightAverage",
    "ExcessMTL",
    "FAMO",
    "GeometricLossWeighting",
    "GradNorm",
    "GradVac",
    "GradientProjection",
    "IMTLLossScaling",
    "MGDA",
    "PCGrad",
    "ParetoEfficient",
    "RandomLossWeighting",
    "SmoothTchebycheff",
    "StaticWeighting",
    "TaskWeighting",
    "UncertaintyWeighting",
]
