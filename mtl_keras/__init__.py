"""mtl_keras: multi-task learning for TensorFlow/Keras, from training to TF Serving."""

from mtl_keras import callbacks, datasets, export, features, layers, losses, models
from mtl_keras.backend import IS_KERAS3
from mtl_keras.model import MultiTaskModel

__version__ = "0.1.0"

__all__ = [
    "IS_KERAS3", "MultiTaskModel", "callbacks", "datasets", "export", "features", "layers", "losses", "models",
]
