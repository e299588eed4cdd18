"""Gradient projections: a base class (Gram matrix -> coefficients) and one method a module."""

from mtl_keras.core.gram import gram_matrix
from mtl_keras.core.stateful import resolve
from mtl_keras.projection.aligned_mtl import AlignedMTL
from mtl_keras.projection.base import GradientProjection
from mtl_keras.projection.cagrad import CAGrad
from mtl_keras.projection.db_mtl import DBMTL
from mtl_keras.projection.fairgrad import FairGrad
from mtl_keras.projection.graddrop import GradDrop
from mtl_keras.projection.gradvac import GradVac
from mtl_keras.projection.imtl import IMTL
from mtl_keras.projection.mgda import MGDA
from mtl_keras.projection.modo import MoDo
from mtl_keras.projection.moco import MoCo
from mtl_keras.projection.nash_mtl import NashMTL
from mtl_keras.projection.pareto import ParetoEfficient
from mtl_keras.projection.pcgrad import PCGrad
from mtl_keras.projection.rgw import RandomGradientWeighting
from mtl_keras.projection.sdmgrad import SDMGrad
from mtl_keras.projection.upgrad import UPGrad

# String identifiers, as Keras has for optimizers ("adam").
BY_NAME = {
    "pcgrad": PCGrad,
    "gradvac": GradVac,
    "mgda": MGDA,
    "cagrad": CAGrad,
    "pareto": ParetoEfficient,
    "imtl": IMTL,
    "nash_mtl": NashMTL,
    "aligned_mtl": AlignedMTL,
    "upgrad": UPGrad,
    "fairgrad": FairGrad,
    "db_mtl": DBMTL,
    "moco": MoCo,
    "graddrop": GradDrop,
    "rgw": RandomGradientWeighting,
    "sdmgrad": SDMGrad,
    "modo": MoDo,
}


def get(identifier):
    """The GradientProjection that compile's ``gradient_projection`` names.

    Args:
        identifier: None, a name from ``BY_NAME``, a serialized config, or a
            GradientProjection.

    Returns:
        A ``GradientProjection``, or None for None.

    Raises:
        ValueError: for anything else, naming ``gradient_projection``.

    Example:
    >>> type(get("pcgrad")).__name__
    'PCGrad'
    >>> get("mgda").normalization
    'loss+'
    """
    if identifier is None:
        return None
    return resolve(identifier, "gradient_projection", GradientProjection, BY_NAME, "None or a GradientProjection")


__all__ = [
    "AlignedMTL", "BY_NAME", "CAGrad", "DBMTL", "FairGrad", "GradDrop", "MoCo", "MoDo", "RandomGradientWeighting", "SDMGrad", "GradVac", "GradientProjection", "IMTL", "MGDA",
    "NashMTL", "PCGrad", "ParetoEfficient", "UPGrad", "get", "gram_matrix",
]
