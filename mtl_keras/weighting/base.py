"""Task weightings: how per-task losses are combined into the training loss.

A weighting is an object with one interface, so the train step has no branch
per method. Once, at compile time, ``build(task_names, loss_kinds, model)``;
then every step, inside the gradient tape:

- ``weights(task_losses)`` -> [T] weights in task order (may depend on the
  weighting's own trainable state, which then gets gradients);
- ``regularization()`` -> a scalar added once to the loss;
- ``task_regularization()`` -> None, or [T]: the per-task terms included in
  ``regularization()``, which the train step takes out again for a task that
  has not started or has no labelled rows in the step's batch;
- ``update(step)`` after the forward pass, with the tape, the global task
  losses and the model (GradNorm's own weight update, DWA's running sums);

and ``on_epoch_end()`` between epochs (called by MultiTaskModel.fit).
``task_losses`` are the global (all-replica) per-task losses, without gradient.
"""

from mtl_keras.backend import register, tf
from mtl_keras.core.stateful import StatefulObject


@register
class TaskWeighting(StatefulObject):
    """Base class; equal weights.

    A subclass overrides ``weights(task_losses) -> [T]`` and, as needed,
    ``build`` (create state with ``self.add_state``; trainable state is
    trained by the model's "default" optimizer), ``regularization``,
    ``task_regularization``,
    ``update`` and ``on_epoch_end``. ``needs_tape = True`` keeps the tape
    persistent for an ``update`` that takes gradients. Register a subclass
    with ``keras.saving.register_keras_serializable()`` for `.keras` files
    to revive it.

    Example:
    >>> class LossProportional(TaskWeighting):
    ...     def weights(self, task_losses):
    ...         return tf.stop_gradient(task_losses / tf.reduce_sum(task_losses))
    >>> w = LossProportional()
    >>> w.build(["ctr", "cvr"])
    >>> w.weights(tf.constant([3.0, 1.0])).numpy().tolist()
    [0.75, 0.25]
    """

    needs_tape = False

    def build(self, task_names, loss_kinds=None, model=None):
        self.task_names = list(task_names)

    def weights(self, task_losses):
        return tf.ones([len(self.task_names)])

    def regularization(self):
        return tf.constant(0.0)

    def task_regularization(self):
        return None

    # Not converted: AutoGraph (tf_keras traces the step with it) fails on a body that is only a docstring.
    @tf.autograph.experimental.do_not_convert
    def update(self, step):
        """Called every training step after the forward pass (see ``mtl_keras.core.step.TrainStep``)."""

    def on_epoch_end(self):
        """Called by MultiTaskModel.fit after each epoch."""


def require(valid, method, argument, expected, value):
    """Raises the ValueError of a hyper-parameter out of range: the method, the argument, what
    it must be and what it got."""
    if not valid:
        raise ValueError(f"{method}: `{argument}` must be {expected}; got {value!r}.")
