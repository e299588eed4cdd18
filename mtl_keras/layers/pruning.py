"""The export's pruning protocol: layers whose serving graph leaves out what their routing closed."""

import contextlib


class PrunedAtExport:
    """Mixin for a layer that computes less once its routing is baked in.

    ``mtl_keras.export.export_saved_model`` calls ``freeze()`` on every layer
    of the model carrying this mixin before it traces the serving signatures,
    and ``unfreeze()`` once the version is written or the export failed
    (``frozen_for_export``), so a new prunable layer needs no edit of the
    export. ``freeze()`` reads the routing once and, where it is settled (SNR's
    z_hat, static DSelect-k gates that select at most k experts), keeps it as
    constants with which later inference calls (``training`` false) compute
    only the open routes; where it is not settled, nothing changes. Training
    calls never use them. Unlike ``LearntStructure.freeze`` (AdaShare, ...),
    which fixes a searched structure for good, ``unfreeze()`` undoes it.

    Example:
    >>> from mtl_keras.layers import ExpertGate, HardConcreteRouter
    >>> [isinstance(layer, PrunedAtExport) for layer in (ExpertGate(2, 4, 1), HardConcreteRouter(1, units=2))]
    [True, True]
    """

    def freeze(self):
        """Bakes the settled routing in for the inference calls that follow."""
        raise NotImplementedError(f"{type(self).__name__} must define freeze().")

    def unfreeze(self):
        """Back to computing the routing on every call."""
        raise NotImplementedError(f"{type(self).__name__} must define unfreeze().")


@contextlib.contextmanager
def frozen_for_export(layers):
    """Freezes the ``PrunedAtExport`` layers among ``layers`` for the block, unfreezes them after.

    Example:
    >>> from mtl_keras.layers import HardConcreteRouter
    >>> router = HardConcreteRouter(num_outputs=1, units=2)
    >>> _ = router([tf.ones([1, 3])])
    >>> with frozen_for_export([router, keras.layers.Dense(2)]):
    ...     router.frozen_gates.shape
    (1, 1)
    >>> router.frozen_gates is None
    True
    """
    prunable = [layer for layer in layers if isinstance(layer, PrunedAtExport)]
    try:
        for layer in prunable:
            layer.freeze()
        yield prunable
    finally:
        for layer in prunable:
            layer.unfreeze()
