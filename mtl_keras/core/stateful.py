"""The base of every training strategy (weightings and projections), and how one is named.

A strategy is a Keras-serializable object with hyper-parameters in ``__init__``
and ``get_config`` and, optionally, training state created in ``build``; the
trainer saves and restores that state with the model (``training.state``).
"""

from mtl_keras.backend import AutoTrackable, keras, state_variable


class StatefulObject(AutoTrackable):
    """Base of weightings and projections: a Keras-serializable object with training state.

    Subclasses take their hyper-parameters in ``__init__``, return them from
    ``get_config`` (``from_config`` calls ``cls(**config)``), and create their
    state in ``build`` with ``add_state``; the model saves and restores it.

    Example:
    >>> class Counter(StatefulObject):
    ...     def build(self, task_names):
    ...         self.count = self.add_state("count", 0)
    >>> counter = Counter()
    >>> counter.build(["ctr", "cvr"])
    >>> list(counter.state_variables), Counter.from_config(counter.get_config()).state_variables
    (['count'], {})
    """

    def add_state(self, name, initial_value, trainable=False):
        """A variable kept across steps and saved with the model (created in ``build``)."""
        variable = state_variable(initial_value, name, trainable=trainable)
        states = dict(getattr(self, "_mtl_state", {}))
        states[name] = variable
        self._mtl_state = states
        return variable

    @property
    def state_variables(self):
        """{name: variable}, in creation order."""
        return dict(getattr(self, "_mtl_state", {}))

    @property
    def trainable_variables(self):
        return [v for v in self.state_variables.values() if v.trainable]

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def resolve(identifier, argument, base, by_name, accepted):
    """A ``base`` instance from an instance, a name or a Keras-serialized config.

    Names are looked up in ``by_name`` case-insensitively, as Keras takes
    optimizer="adam".

    Args:
        identifier: an instance of ``base``, a name of ``by_name``, or a config
            that ``keras.saving.serialize_keras_object`` wrote.
        argument: the argument's name, for the error message.
        base: the class every result is an instance of.
        by_name: {lower-case name: class or factory taking no arguments}.
        accepted: what else the argument accepts, for the error message.

    Returns:
        The ``base`` instance.

    Raises:
        ValueError: naming ``argument`` and what it accepts, for anything else.

    Example:
    >>> from mtl_keras import weighting
    >>> resolve("DWA", "task_weighting", weighting.TaskWeighting, {"dwa": weighting.DynamicWeightAverage},
    ...         "or a TaskWeighting").__class__.__name__
    'DynamicWeightAverage'
    """
    if isinstance(identifier, base):
        return identifier
    if isinstance(identifier, str):
        if identifier.lower() in by_name:
            return by_name[identifier.lower()]()
        raise ValueError(
            f"`{argument}` {identifier!r} is not a known {base.__name__}; expected one of "
            f"{sorted(by_name)}, {accepted}."
        )
    if isinstance(identifier, dict) and "class_name" in identifier:
        value = keras.saving.deserialize_keras_object(identifier)
        if isinstance(value, base):
            return value
    raise ValueError(
        f"`{argument}` must be a name among {sorted(by_name)}, {accepted}; got {identifier!r}."
    )
