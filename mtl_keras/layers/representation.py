"""Marking the shared representation that fast gradient projections look at."""

import collections
import threading

from mtl_keras.backend import keras, register


Mixing = collections.namedtuple("Mixing", "gates mixes")
Mixing.__doc__ = """How a recorded output H is read: only through mixes[k] = sum_e gates[k][b, e] H[b, e, :]."""


class RecordsRepresentation:
    """Mixin for layers whose output can stand for the shared parameters.

    The layer keeps its latest output (a tensor of the graph being traced) so
    a train step with ``projection_mode="fast"`` can take each task's gradient
    with respect to it, a much smaller job than with respect to the weights.
    A layer that reads an expert stack's output only through gated mixtures
    (ExpertGate, CGCLayer) records those mixtures too, and the task Gram
    matrix is then formed from the gates and the gradients of the mixtures
    (``shared_gradients.mixing_gram``), never the [B, E, H] gradients.
    The record is per thread: MirroredStrategy traces each replica's step in
    its own thread, and each must read back its own tensor.
    """

    def _store(self):
        store = self.__dict__.get("_representation_store")
        if store is None:
            # object.__setattr__: per-trace state, not something for Keras to track or save.
            store = threading.local()
            object.__setattr__(self, "_representation_store", store)
        return store

    def _record(self, outputs):
        store = self._store()
        store.output, store.mixing = outputs, Mixing([], [])
        return outputs

    def _record_mixing(self, gate, mixed):
        """Records that the latest output is read through ``mixed = sum_e gate[b, e] output[b, e, :]``.

        The caller must record every read of the output: the Gram matrix counts no other path.
        """
        mixing = self._store().mixing
        mixing.gates.append(gate)
        mixing.mixes.append(mixed)

    @property
    def recorded_output(self):
        """The output of this thread's latest call."""
        return self.__dict__["_representation_store"].output

    @property
    def recorded_representation(self):
        """The latest call's Mixing when its reads were recorded, else its output."""
        store = self.__dict__["_representation_store"]
        return store.mixing if store.mixing.mixes else store.output


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
