"""What a compiled MultiTaskModel writes beside its weights, and reads back.

Its compile arguments travel as the Keras compile config (a `.keras` file, or
tf_keras's SavedModel training config), so a loaded model compiles as the saved
one did; its training state (``training.state``) travels with its own entries
of a Keras file under ``mtl:`` keys.
"""

from mtl_keras.training import arguments
from mtl_keras.training import state as state_lib


class SavesTraining:
    """Mixin of ``MultiTaskModel``: the compile config and training state in its saved files.

    Reads the model's ``_mtl_trainer`` (None until compiled), ``_mtl_compiled``
    (the compile arguments) and ``_mtl_state`` (the ``TrainingState``, or None).
    An uncompiled model writes no compile config and skips the training state of
    a file it loads (inference), as Keras skips an optimizer it has not built.

    Example:
    >>> from mtl_keras import models
    >>> model = models.shared_bottom(keras.Input((3,)), ["ctr", "cvr"], bottom_units=(4,))
    >>> isinstance(model, SavesTraining), model.get_compile_config()
    (True, None)
    """

    def get_compile_config(self):
        if not self._mtl_trainer:
            return None
        return arguments.serialize(self._mtl_compiled)

    def compile_from_config(self, config):
        self.compile(**arguments.deserialize(config))

    def _get_compile_args(self, user_metrics=True):
        # tf_keras writes these into a SavedModel's training config; ours travel whole.
        return arguments.for_saved_model(self.optimizer, self.get_compile_config())

    def save_own_variables(self, store):
        super().save_own_variables(store)
        if self._mtl_state is not None:
            state_lib.save(self._mtl_state, store)

    def load_own_variables(self, store):
        own, training = state_lib.split_store(store)
        super().load_own_variables(own)
        if training and self._mtl_state is not None:
            state_lib.load(self._mtl_state, training)
