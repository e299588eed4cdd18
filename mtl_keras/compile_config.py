"""MultiTaskModel's compile arguments to and from a `.keras` file's compile config."""

from mtl_keras.backend import keras

_STRATEGIES = ("task_weighting", "gradient_projection")


def serialize(arguments):
    config = dict(arguments)
    optimizer = config["optimizer"]
    config["optimizer"] = (
        {group: _optimizer(value) for group, value in optimizer.items()}
        if isinstance(optimizer, dict)
        else _optimizer(optimizer)
    )
    config["loss"] = {task: _object(value) for task, value in config["loss"].items()}
    config["metrics"] = {task: [_object(m) for m in ms] for task, ms in config["metrics"].items()}
    for key in _STRATEGIES:
        value = config[key]
        if value is not None and not isinstance(value, dict):
            config[key] = {"class_name": type(value).__name__, "config": value.get_config()}
    return config


def deserialize(config):
    from mtl_keras import losses

    arguments = dict(config)
    optimizer = arguments["optimizer"]
    if isinstance(optimizer, dict) and "class_name" not in optimizer:
        arguments["optimizer"] = {g: keras.optimizers.get(v) for g, v in optimizer.items()}
    else:
        arguments["optimizer"] = keras.optimizers.get(optimizer)
    for key in _STRATEGIES:
        value = arguments.get(key)
        if isinstance(value, dict) and "class_name" in value:
            arguments[key] = getattr(losses, value["class_name"])(**value["config"])
    return arguments


def _optimizer(value):
    return value if isinstance(value, str) else keras.optimizers.serialize(value)


def _object(value):
    if isinstance(value, str) or value is None:
        return value
    return keras.saving.serialize_keras_object(value)
