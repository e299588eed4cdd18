"""Multi-task layers: experts, gates, routers, per-domain norms."""

from mtl_keras.layers.cgc import PLE, CGCLayer
from mtl_keras.layers.expert_gate import ExpertGate
from mtl_keras.layers.experts import ExpertStack
from mtl_keras.layers.representation import SharedRepresentation

__all__ = ["CGCLayer", "ExpertGate", "ExpertStack", "PLE", "SharedRepresentation"]
