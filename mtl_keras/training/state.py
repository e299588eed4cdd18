"""Training state: saved with the model like the optimizer's, never one of its weights.

Weightings and projections keep state across steps (log-variances, GradVac
targets, DWA's loss history, step counters), and a model may train with
several optimizers. All of it must survive `.keras`, `tf.train.Checkpoint`,
`ModelCheckpoint` and `BackupAndRestore`, yet a `.weights.h5` written by a
trained model must still load into a freshly built one for inference.

So the state lives on plain trackable objects (TensorFlow's checkpoints and
SavedModels follow them; Keras's weight tracking does not), and
``MultiTaskModel.save_own_variables`` adds it to the model's entry of a Keras
file under ``mtl:``-prefixed keys, which a model that is not compiled skips,
as Keras skips an optimizer it has not built.
"""

import numpy as np

from mtl_keras.backend import AutoTrackable, state_variable, tf

PREFIX = "mtl:"


class TrainingState(AutoTrackable):
    """What a compiled MultiTaskModel trains with, beside its weights and main optimizer.

    Attributes: ``weighting``, ``projection`` (or None), ``step`` (training
    steps taken), ``nonfinite_steps`` (updates skipped), ``optimizers`` (the
    group optimizers other than ``model.optimizer``, which Keras saves itself).
    """

    def __init__(self, weighting, projection, optimizers):
        self.weighting = weighting
        self.projection = projection
        self.optimizers = list(optimizers)
        self.step = state_variable(tf.constant(0, tf.int64), "mtl_step")
        self.nonfinite_steps = state_variable(tf.constant(0, tf.int64), "mtl_nonfinite_steps")

    def variables_by_key(self):
        """{key: variable} with keys stable across processes (for Keras files)."""
        found = {"step": self.step, "nonfinite_steps": self.nonfinite_steps}
        for role, owner in (("weighting", self.weighting), ("projection", self.projection)):
            if owner is not None:
                found.update({f"{role}.{n}": v for n, v in owner.state_variables.items()})
        for index, optimizer in enumerate(self.optimizers):
            found.update({f"optimizer{index}.{i}": v for i, v in enumerate(optimizer.variables)})
        return found


def save(state, store):
    for key, variable in state.variables_by_key().items():
        store[PREFIX + key] = np.asarray(tf.convert_to_tensor(variable))


def split_store(store):
    """(the model's own entries as a dict, the training-state entries by key)."""
    own, training = {}, {}
    for key in list(store.keys()):
        if key.startswith(PREFIX):
            training[key[len(PREFIX):]] = np.asarray(store[key])
        else:
            own[key] = store[key]
    return own, training


def load(state, saved):
    """Assigns the saved training state; a variable the file lacks keeps its value."""
    for key, variable in state.variables_by_key().items():
        if key not in saved:
            continue
        value = saved[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Saved training state {key!r} has shape {value.shape}; this model's "
                f"compiled state expects {tuple(variable.shape)}. Compile the model as it "
                "was compiled when saved (same tasks, weighting, projection and optimizers)."
            )
        variable.assign(value)
