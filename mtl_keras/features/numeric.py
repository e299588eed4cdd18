"""Numeric features: float values normalised with statistics learnt by ``adapt``."""

import numpy as np

from mtl_keras.backend import keras
from mtl_keras.features.inputs import column_array
from mtl_keras.features.layers import RawFeature


class Numeric:
    """A float feature, standardised as ``(x - mean) / sqrt(variance)``.

    A missing value (NaN, or a gap in a pandas column) becomes ``default``
    inside the model, in training and serving alike; ``adapt`` learns the
    statistics from the values present.

    Args:
        name: the feature's (and the model input's) name.
        width: values per row (``[B]`` when 1, else ``[B, width]``).
        mean, variance: the statistics; None = learnt by ``FeatureSpec.adapt``.
        default: what a missing value becomes; None = the mean (0 once standardised).

    Example:
    >>> price = Numeric("price")
    >>> price.adapt(np.array([1.0, 3.0]))
    >>> float(price.mean[0]), float(price.variance[0])
    (2.0, 1.0)
    """

    kind = "numeric"
    value_dtype = "float32"
    max_length = None

    def __init__(self, name, width=1, mean=None, variance=None, default=None):
        self.name = name
        self.default = default
        self.width = int(width)
        self.mean = None if mean is None else np.broadcast_to(np.asarray(mean, np.float32), [self.width])
        self.variance = (
            None if variance is None else np.broadcast_to(np.asarray(variance, np.float32), [self.width])
        )

    def adapt(self, values):
        array = column_array(self.name, self.kind, self.value_dtype, values).reshape(-1, self.width)
        if np.isnan(array).all(axis=0).any():
            raise ValueError(f"Feature {self.name!r}: `adapt` needs at least one value that is not missing; got none.")
        self.mean, self.variance = np.nanmean(array, axis=0), np.nanvar(array, axis=0)

    def input_shape(self):
        return () if self.width == 1 else (self.width,)

    def raw(self):
        default = self.mean if self.default is None else self.default
        return RawFeature(self.name, self.kind, self.value_dtype, self.width,
                          default=None if default is None else np.asarray(default, np.float32).tolist(),
                          name=f"{self.name}_raw")

    def encode(self, raw):
        """The normalised values [B, width] from the RawFeature output."""
        if self.mean is None:
            raise ValueError(f"Feature {self.name!r} has no statistics: call `FeatureSpec.adapt` first.")
        normalization = keras.layers.Normalization(
            mean=self.mean.tolist(), variance=self.variance.tolist(), name=f"{self.name}_normalization"
        )
        return normalization(raw)
