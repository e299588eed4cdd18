"""Marking the shared representation that fast gradient projections look at."""

import collections
import threading

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import gating


Mixing = collections.namedtuple("Mixing", "gates mixes")
Mixing.__doc__ = """How a recorded output H is read: only through mixes[k] = sum_e gates[k][b, e] H[b, e, :]."""


class RecordsRepresentation:
    """Mixin for layers whose output can stand for the shared parameters.

    The layer keeps its latest output (a tensor of the graph being traced) so
    a train step with ``projection_mode="fast"`` can take each task's gradient
    with respect to it, a much smaller job than with respect to the weights.
    A layer that reads an expert stack's output through gated mixtures
    calls ``stack.mix(gate, stack_output)`` (ExpertGate, CGCLayer, a user's
    own gate), which mixes and records the read in one call; the task Gram
    matrix is then formed from the gates and the gradients of the mixtures
    (``training.representation_gram.mixing_gram``), never the [B, E, H] gradients.
    Once a call's output is mixed, every read of it must go through ``mix``:
    fast mode refuses an output that is also read some other way (the Gram
    matrix would miss that path).
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
        store.readers = _consumers(outputs)
        store.mix_ops = set()
        return outputs

    def mix(self, gate, outputs):
        """``sum_e gate[b, e] outputs[b, e, :]`` -> [B, H], recorded for fast projections.

        Args:
            gate: [B, E] mixing weights (a gate's probabilities, or a slice of
                them over this stack's experts).
            outputs: this layer's output of the same call, [B, E, H].

        Example:
        >>> from mtl_keras.layers import ExpertStack
        >>> stack = ExpertStack(num_experts=2, units=(3,))
        >>> h = stack(tf.ones([4, 5]))
        >>> stack.mix(tf.fill([4, 2], 0.5), h).shape
        TensorShape([4, 3])
        """
        store = self._store()
        if getattr(store, "output", None) is not outputs:
            raise ValueError(
                f"{type(self).__name__}.mix: `outputs` must be this layer's output of the "
                "current call (the tensor it returned), so fast projections see the read."
            )
        mixed = gating.mix(gate, outputs)
        readers = _consumers(outputs)
        store.mixing.gates.append(gate)
        store.mixing.mixes.append(mixed)
        store.mix_ops = getattr(store, "mix_ops", set()) | (readers - getattr(store, "readers", set()))
        store.readers = readers
        return mixed

    @property
    def recorded_output(self):
        """The output of this thread's latest call."""
        return self.__dict__["_representation_store"].output

    def _unrecorded_reads(self):
        """The ops other than ``mix`` reading the latest call's output, once it was mixed."""
        store = self.__dict__["_representation_store"]
        return _consumers(store.output) - store.mix_ops if store.mixing.mixes else set()

    @property
    def recorded_mixing_only(self):
        """The latest call's Mixing when its output was read only through ``mix``, else None."""
        store = self.__dict__["_representation_store"]
        if not store.mixing.mixes or self._unrecorded_reads():
            return None
        return store.mixing

    @property
    def recorded_representation(self):
        """The latest call's Mixing when its reads were recorded, else its output.

        Raises a ValueError when the output was mixed through ``mix`` and also read
        by an op ``mix`` did not make: that read's gradient would be missing.
        """
        store = self.__dict__["_representation_store"]
        if not store.mixing.mixes:
            return store.output
        unrecorded = self._unrecorded_reads()
        if unrecorded:
            raise ValueError(
                f"Layer {self.name!r}: its output is mixed through `mix` and also read by "
                f"{sorted(op.name for op in unrecorded)}, which `mix` did not record; "
                "projection_mode='fast' would miss that read. Read the output only through "
                f"`{type(self).__name__}.mix(gate, outputs)`, or use projection_mode='exact'."
            )
        return store.mixing


def _consumers(tensor):
    """The ops of the graph being traced that read ``tensor`` (none when eager)."""
    if tf.executing_eagerly() or not hasattr(tensor, "consumers"):
        return set()
    return set(tensor.consumers())


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
