"""Serving: a client on TF Serving's official stubs and a local server that answers like it."""

from mtl_keras.serving.client import PredictClient, ServingError

__all__ = ["PredictClient", "ServingError"]
