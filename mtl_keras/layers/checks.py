"""Argument checks shared by the layers: each error names the argument and what it expects."""

from mtl_keras.backend import tf


def positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}; got {value!r}.")
    return value


def units(name, value):
    """An int or a non-empty sequence of positive ints, returned as a tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        value = tuple(value)
    except TypeError:
        value = None
    if not value or any(isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in value):
        raise ValueError(
            f"`{name}` must be a positive int or a non-empty tuple of positive ints; got {value!r}."
        )
    return value


def rate(name, value):
    if not 0.0 <= float(value) < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); got {value!r}.")
    return float(value)


def positive_float(name, value):
    if not float(value) > 0.0:
        raise ValueError(f"`{name}` must be > 0; got {value!r}.")
    return float(value)


def shape_list(shape):
    """A list of TensorShapes when ``shape`` describes several inputs, else None."""
    if isinstance(shape, (list, tuple)) and shape and not isinstance(shape[0], (int, type(None))):
        return [tf.TensorShape(s) for s in shape]
    return None
