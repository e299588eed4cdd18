"""The public namespace of task weightings and gradient projections.

The methods live in ``mtl_keras.weighting`` and ``mtl_keras.projection``, one a module.
"""

from mtl_keras.projection import (
    IMTL,
    MGDA,
    AlignedMTL,
    CAGrad,
    FairGrad,
    GradientProjection,
    GradVac,
    NashMTL,
    ParetoEfficient,
    PCGrad,
    UPGrad,
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
    "AlignedMTL",
    "CAGrad",
    "DynamicWeightAverage",
    "ExcessMTL",
    "FAMO",
    "FairGrad",
    "GeometricLossWeighting",
    "GradNorm",
    "GradVac",
    "GradientProjection",
    "IMTL",
    "IMTLLossScaling",
    "MGDA",
    "NashMTL",
    "PCGrad",
    "ParetoEfficient",
    "RandomLossWeighting",
    "SmoothTchebycheff",
    "StaticWeighting",
    "TaskWeighting",
    "UPGrad",
    "UncertaintyWeighting",
]
