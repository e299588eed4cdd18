"""Per-task losses, task weightings and gradient projections."""

from mtl_keras.losses.cagrad import CAGrad
from mtl_keras.losses.mgda import MGDA
from mtl_keras.losses.pareto import ParetoEfficient
from mtl_keras.losses.projection import GradientProjection, GradVac, PCGrad
from mtl_keras.losses.gradnorm import GradNorm
from mtl_keras.losses.weighting import (
    DynamicWeightAverage,
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
