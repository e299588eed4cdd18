"""Per-task losses, task weightings and (later) gradient projections."""

from mtl_keras.losses.weighting import StaticWeighting, TaskWeighting

__all__ = ["StaticWeighting", "TaskWeighting"]
