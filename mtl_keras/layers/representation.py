"""Marking the shared representation that fast gradient projections look at."""

import threading

from mtl_keras.backend import keras, register


class RecordsRepresentation:
    """Mixin for layers whose output can stand for the shared parameters.

    The layer keeps its latest output (a tensor of the graph being traced) so
    a train step with ``projection_mode="fast"`` can take each task's gradient
    with respect to it, a much smaller job than with respect to the weights.
    The record is per thread: MirroredStrategy traces each replica's step in
    its own thread, and each must read back its own tensor.
    """

    def _record(self, outputs):
        store = self.__dict__.get("_representation_store")
        if store is None:
            # object.__setattr__: per-trace state, not something for Keras to track or save.
            store = threading.local()
            object.__setattr__(self, "_representation_store", store)
        store.output = outputs
        return outputs

    @property
    def recorded_output(self):
        """The output of this thread's latest call."""
        return self.__dict__["_representation_store"].output


@register
class SharedRepresentation(RecordsRepresentation, keras.layers.Layer):
    """Identity layer marking a tensor that every task reads (e.g. a shared bottom's output).

    ``MultiTaskModel.compile(..., projection_mode="fast")`` computes the task
    Gram matrix from the gradients with respect to the tensors so marked (and
    to the outputs of shared expert stacks).

    Example:
    >>> h = SharedRepresentation()(keras.layers.Dense(8)(keras.Input((4,))))
    """

    def call(self, inputs):
        return self._record(inputs)
