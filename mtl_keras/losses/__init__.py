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
    DynamicWeightAverage,
    GradNorm,
    StaticWeighting,
    TaskWeighting,
    UncertaintyWeighting,
)

__all__ = [
    "CAGrad",
    "DynamicWeightAverage",
    "GradNorm",
    "GradVac",
    "GradientProjection",
    "MGDA",
    "PCGrad",
    "ParetoEfficient",
    "StaticWeighting",
    "TaskWeighting",
    "UncertaintyWeighting",
]
