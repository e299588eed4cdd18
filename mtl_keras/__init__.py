"""mtl_keras: multi-task learning for TensorFlow/Keras, from training to TF Serving."""

import os as _os
import sys as _sys

if _sys.argv and _os.path.basename(_sys.argv[0]) == "mtl-keras":  # the command: no TensorFlow start-up noise
    from mtl_keras.cli import quiet_tensorflow as _quiet_tensorflow

    _quiet_tensorflow()

from mtl_keras import callbacks, datasets, export, features, layers, losses, models
from mtl_keras.backend import IS_KERAS3
from mtl_keras.model import MultiTaskModel

__version__ = "0.1.0"

__all__ = [
    "IS_KERAS3", "MultiTaskModel", "callbacks", "datasets", "export", "features", "layers", "losses", "models",
]
