"""The public namespace of task weightings and gradient projections.

The methods live in ``mtl_keras.weighting`` and ``mtl_keras.projection``, one a module.
"""

from mtl_keras.projection import (
    IMTL,
    MGDA,
    AlignedMTL,
    DBMTL,
    CAGrad,
    FairGrad,
    GradDrop,
    GradientProjection,
    GradVac,
    MoCo,
    RandomGradientWeighting,
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
    "DBMTL",
    "DynamicWeightAverage",
    "ExcessMTL",
    "FAMO",
    "FairGrad",
    "GeometricLossWeighting",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientProjection",
    "IMTL",
    "IMTLLossScaling",
    "MGDA",
    "MoCo",
    "NashMTL",
    "PCGrad",
    "ParetoEfficient",
    "RandomGradientWeighting",
    "RandomLossWeighting",
    "SmoothTchebycheff",
    "StaticWeighting",
    "TaskWeighting",
    "UPGrad",
    "UncertaintyWeighting",
]
