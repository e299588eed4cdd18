"""Multi-task layers: experts, gates, routers, per-domain norms."""

from mtl_keras.layers.adashare import AdaShareBlocks
from mtl_keras.layers.aitm import FunnelCalibration, InformationTransfer
from mtl_keras.layers.branching import BranchingLayers
from mtl_keras.layers.cgc import CGCLayer
from mtl_keras.layers.cross_stitch import CrossStitch
from mtl_keras.layers.dselect_k import DSelectKGate
from mtl_keras.layers.expert_gate import ExpertGate
from mtl_keras.layers.experts import ExpertStack
from mtl_keras.layers.hard_concrete import HardConcreteRouter
from mtl_keras.layers.mtan import MTANAttention
from mtl_keras.layers.mtl_nas import SearchedFusion
from mtl_keras.layers.nddr import NDDR
from mtl_keras.layers.pepnet import EPNet, PPNet
from mtl_keras.layers.ple import PLE
from mtl_keras.layers.representation import SharedRepresentation
from mtl_keras.layers.star import PartitionedNorm, StarDense

__all__ = [
    "AdaShareBlocks",
    "BranchingLayers",
    "CGCLayer",
    "CrossStitch",
    "DSelectKGate",
    "EPNet",
    "ExpertGate",
    "ExpertStack",
    "FunnelCalibration",
    "HardConcreteRouter",
    "InformationTransfer",
    "MTANAttention",
    "NDDR",
    "PLE",
    "PPNet",
    "PartitionedNorm",
    "SearchedFusion",
    "SharedRepresentation",
    "StarDense",
]
