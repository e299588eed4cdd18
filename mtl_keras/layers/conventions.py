"""Keras's initializer and regularizer arguments, shared by every layer with a kernel.

The convention, one for the whole package: a layer's ``kernel_initializer``,
``bias_initializer``, ``kernel_regularizer`` and ``bias_regularizer`` (as
``keras.layers.Dense`` takes them) apply to every kernel and bias the layer
creates, experts and gates alike, each as if it were its own Dense layer.
``activity_regularizer`` is Keras's own base-layer argument and works on every
layer. Every builder in ``mtl_keras.models`` takes the same four arguments and
hands them to every layer with a kernel it creates (bottoms, experts, gates,
routers, towers, heads).
"""

import math

from mtl_keras.backend import keras

KERNEL_ARGUMENTS = ("kernel_initializer", "bias_initializer", "kernel_regularizer", "bias_regularizer")
DEFAULTS = {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros"}


def resolve(kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
            bias_regularizer=None):
    """The four arguments resolved with ``keras.initializers.get`` / ``keras.regularizers.get``.

    Example:
    >>> args = resolve(kernel_regularizer="l2")
    >>> type(args["kernel_initializer"]).__name__, type(args["kernel_regularizer"]).__name__
    ('GlorotUniform', 'L2')
    """
    resolved = {}
    for name, value in (("kernel_initializer", kernel_initializer), ("bias_initializer", bias_initializer)):
        try:
            resolved[name] = keras.initializers.get(value if value is not None else DEFAULTS[name])
        except (ValueError, TypeError) as error:
            raise ValueError(f"`{name}` must be a Keras initializer or its name; got {value!r}.") from error
    for name, value in (("kernel_regularizer", kernel_regularizer), ("bias_regularizer", bias_regularizer)):
        try:
            regularizer = keras.regularizers.get(value)
        except (ValueError, TypeError):
            regularizer = value
        # tf_keras hands an unknown name back as the string itself.
        if isinstance(regularizer, str) or not (regularizer is None or callable(regularizer)):
            raise ValueError(f"`{name}` must be a Keras regularizer, its name or None; got {value!r}.")
        resolved[name] = regularizer
    return resolved


def serialize(args):
    """The resolved arguments as ``get_config`` entries."""
    return {
        name: (keras.regularizers.serialize(value) if "regularizer" in name and value is not None
               else keras.initializers.serialize(value) if "initializer" in name else None)
        for name, value in args.items()
    }


def fresh(initializer):
    """A new instance of ``initializer``: one instance called twice gives the same values in
    both Kerases, so each weight gets its own (an unseeded one then draws anew)."""
    return keras.initializers.get(keras.initializers.serialize(initializer))


def dense_kwargs(args):
    """Keyword arguments for one ``keras.layers.Dense``, with initializers of its own."""
    return dict(
        kernel_initializer=fresh(args["kernel_initializer"]),
        bias_initializer=fresh(args["bias_initializer"]),
        kernel_regularizer=args["kernel_regularizer"],
        bias_regularizer=args["bias_regularizer"],
    )


def add_kernel(layer, args, name, shape, fans):
    """``layer.add_weight`` of a kernel whose slices are separate ``fans = (in, out)`` maps
    (an expert stack's [E, in, out]): variance-scaling initializers (Glorot, He, LeCun) are
    scaled so each slice gets the variance a Dense layer of that fan would."""
    initializer = fresh(args["kernel_initializer"])
    if isinstance(initializer, keras.initializers.VarianceScaling):
        computed, wanted = _fans(shape), tuple(fans)
        ratio = _fan(computed, initializer.mode) / _fan(wanted, initializer.mode)
        initializer = keras.initializers.VarianceScaling(
            scale=initializer.scale * ratio, mode=initializer.mode,
            distribution=initializer.distribution, seed=initializer.seed,
        )
    return layer.add_weight(
        name=name, shape=shape, initializer=initializer, regularizer=args["kernel_regularizer"]
    )


def add_bias(layer, args, name, shape):
    return layer.add_weight(
        name=name, shape=shape, initializer=fresh(args["bias_initializer"]),
        regularizer=args["bias_regularizer"],
    )


def _fans(shape):
    """Keras's own rule (both Kerases): [in, out], or leading axes as a receptive field."""
    if len(shape) == 2:
        return shape[0], shape[1]
    field = math.prod(shape[:-2])
    return shape[-2] * field, shape[-1] * field


def _fan(fans, mode):
    fan_in, fan_out = fans
    return {"fan_in": fan_in, "fan_out": fan_out}.get(mode, (fan_in + fan_out) / 2.0)
