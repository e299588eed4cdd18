"""mtl_keras: multi-task learning for TensorFlow/Keras, from training to TF Serving."""

import os as _os
import sys as _sys

__version__ = "0.1.0"

__all__ = [
    "IS_KERAS3", "MultiTaskModel", "callbacks", "datasets", "export", "features", "layers", "losses", "models",
]

# The `mtl-keras` command imports what it needs when it needs it (none of TensorFlow for --help /
# --version, and its stderr filtered first: cli.main); a library import registers every
# serializable class, so .keras files load without custom_objects.
if not (_sys.argv and _os.path.basename(_sys.argv[0]) == "mtl-keras"):
    from mtl_keras import callbacks, datasets, export, features, layers, losses, models
    from mtl_keras.backend import IS_KERAS3
    from mtl_keras.model import MultiTaskModel


def __getattr__(name):
    """The command's lazy imports: ``mtl_keras.models`` and the rest load on first use."""
    import importlib

    if name == "IS_KERAS3":
        return importlib.import_module("mtl_keras.backend").IS_KERAS3
    if name == "MultiTaskModel":
        return importlib.import_module("mtl_keras.model").MultiTaskModel
    if name in __all__:
        return importlib.import_module(f"mtl_keras.{name}")
    raise AttributeError(f"module 'mtl_keras' has no attribute {name!r}")
