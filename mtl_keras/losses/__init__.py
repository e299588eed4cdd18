"""Per-task losses, task weightings and gradient projections."""

from mtl_keras.losses.cagrad import CAGrad
from mtl_keras.losses.mgda import MGDA
from mtl_keras.losses.pareto import ParetoEfficient
from mtl_keras.losses.projection import GradientProjection, GradVac, PCGrad
from mtl_keras.losses.weighting import StaticWeighting, TaskWeighting

__all__ = [
    "CAGrad",
    "GradVac",
    "GradientProjection",
    "MGDA",
    "PCGrad",
    "ParetoEfficient",
    "StaticWeighting",
    "TaskWeighting",
]
