"""Gradient projections on the shared parameters: the interface every method implements.

Most methods return a linear combination sum_k a_k g_k of the task gradients
whose coefficients depend only on the Gram matrix K = G G^T ([T, T]) and the
losses. So each one computes K once, works out a ([T], tiny), and the base
class produces a^T G: one pass over the [T, P] gradients either side of the
method's own logic. Such a method works in both gradient modes (exact: K of
the parameter gradients; fast: K of the representation gradients).

A method that needs more says so once, in ``needs``, and the trainer picks
the gradient mode from it (``training.gradient_modes.get``):

- ``"gram"`` (the default): ``coefficients(gram, task_losses) -> [T]``;
  exact and fast modes.
- ``"gradients"``: the [T, P] gradients themselves, for a method that keeps
  per-task state over the shared parameters (DB-MTL's and MoCo's running
  gradients, [T, P] floats: 4 T P bytes of training state) or combines them
  other than linearly: override ``combine_with_gram(gradients, gram,
  task_losses) -> [P]``; ``num_parameters`` (P) is set before ``build``.
  Exact mode only: fast mode never forms the parameter gradients.
- ``"representation"``: each task's gradient at the shared representation
  (the recorded outputs of ``RecordsRepresentation`` layers), combined
  element-wise: override ``combine_representation(task_gradients [T, B, ...],
  activations [B, ...]) -> [B, ...]``, which the trainer backpropagates into
  the shared parameters once. Fast mode only: it needs the representation.
- ``"sub_batches"``: the [T, P] gradients on each of ``num_sub_batches``
  disjoint sub-batches of the batch (the rows i with i mod S = s): override
  ``combine_sub_batches(parts [S, T, P], task_losses) -> [P]``. Exact mode
  only, on models whose losses are per example (MultiTaskModel).
"""

from mtl_keras.backend import in_xla_context, register, tf
from mtl_keras.core.gram import gram_matrix
from mtl_keras.core.stateful import StatefulObject


@register
class GradientProjection(StatefulObject):
    """Base class: ``combine(task_gradients [T, P], task_losses=None) -> [P]``.

    A subclass implements ``coefficients(gram, task_losses) -> [T]``, the a of
    the combined gradient sum_t a_t g_t, from the float32 Gram matrix [T, T]
    and the global per-task losses [T]. It runs inside the compiled train step
    (graph mode, XLA where enabled), once per step. State kept across steps is
    created in ``build(num_tasks, task_names)`` with ``self.add_state``, so
    that checkpoints save it; hyper-parameters go through ``__init__`` and
    ``get_config``. Register a subclass with
    ``keras.saving.register_keras_serializable()`` for `.keras` files to revive it.

    Attributes:
        needs: "gram", "gradients", "representation" or "sub_batches" (see the module).
        num_parameters: P, the length of a task-gradient row, once known.

    Example:
    >>> class Mean(GradientProjection):
    ...     def coefficients(self, gram, task_losses):
    ...         return tf.fill([gram.shape[0]], 1.0 / gram.shape[0])
    >>> Mean().combine([[1.0, 0.0], [0.0, 3.0]]).numpy().tolist()
    [0.5, 1.5]
    """

    needs = "gram"
    num_parameters = None
    num_sub_batches = 1

    def build(self, num_tasks, task_names=None):
        self.num_tasks = num_tasks
        self.task_names = list(task_names) if task_names is not None else None
        self.built = True

    def combine(self, task_gradients, task_losses=None):
        gradients = tf.convert_to_tensor(task_gradients, tf.float32)
        if gradients.shape.rank != 2 or gradients.shape[0] is None:
            raise ValueError(
                f"`task_gradients` must be a [T, P] tensor with a known T; got shape {gradients.shape}."
            )
        if not getattr(self, "built", False):
            self.num_parameters = gradients.shape[1]
            self.build(gradients.shape[0])
        elif gradients.shape[0] != self.num_tasks:
            raise ValueError(
                f"`task_gradients` has {gradients.shape[0]} rows; this projection was built "
                f"for {self.num_tasks} tasks."
            )
        if task_losses is not None:
            task_losses = tf.reshape(tf.convert_to_tensor(task_losses, tf.float32), [-1])
        return self.combine_with_gram(gradients, gram_matrix(gradients), task_losses)

    def combine_with_gram(self, gradients, gram, task_losses=None):
        """``combine`` for a caller that already has K = G G^T (the train step logs cosines from it)."""
        coefficients = self.coefficients_in_one_block(gram, task_losses)
        return tf.linalg.matvec(tf.cast(gradients, tf.float32), coefficients, transpose_a=True)

    def coefficients_in_one_block(self, gram, task_losses):
        """``coefficients``, which the train step calls: under XLA inside a one-iteration
        ``tf.while_loop`` whose count the compiler cannot see.

        XLA runs a compiled step's operations as a dataflow graph on a thread pool, one hand-off
        per operation; a method's [T]-sized logic is a chain of a hundred or more tiny dependent
        operations (CAGrad's 20 unrolled solver steps), and among a step's large matmuls that
        chain cost 2.8-3.0x an equal step in exact mode where PCGrad's took 2.1x. Inside a loop
        body XLA runs the chain as one nested block: CAGrad, GradVac and Nash-MTL 2.07-2.16x
        (docs/benchmarks.md, "XLA's CPU scheduler"). The body reads ``gram`` times the loop
        counter + 1 (exactly 1), so XLA cannot hoist it out of the loop. ``last_weights``, when
        the method sets one ([T]), is carried out of the loop.
        """
        if not in_xla_context():
            return self.coefficients(gram, task_losses)
        count = gram.shape[0]
        corner = gram[0, 0]
        once = tf.cast(tf.math.is_finite(corner) | tf.logical_not(tf.math.is_finite(corner)), tf.int32)
        sets_weights = []

        def body(i, coefficients, weights):
            one = tf.cast(i + 1, gram.dtype)
            losses = None if task_losses is None else task_losses * tf.cast(one, task_losses.dtype)
            self.last_weights = None
            coefficients = tf.reshape(tf.cast(self.coefficients(gram * one, losses), tf.float32), [count])
            if self.__dict__.get("last_weights") is not None:
                sets_weights.append(True)
                weights = tf.reshape(tf.cast(self.last_weights, tf.float32), [count])
            return i + 1, coefficients, weights

        zeros = tf.zeros([count])
        _, coefficients, weights = tf.while_loop(lambda i, *_: i < once, body, (tf.constant(0), zeros, zeros))
        self.last_weights = weights if sets_weights else None
        return coefficients

    def coefficients(self, gram, task_losses):
        raise NotImplementedError(
            f"{type(self).__name__} must implement coefficients(gram, task_losses) -> [T]."
        )


class RandomOrder:
    """A fresh random order of the other tasks for each task, every step.

    Stateless sampling from (seed, step) so it works under tf.function and XLA
    and is the same on every replica; the step is the owner's saved state, so
    a resumed run draws the orders the uninterrupted one would have.
    """

    def __init__(self, shuffle, seed):
        self.shuffle = bool(shuffle)
        self.seed = int(seed)

    def build(self, owner):
        if self.shuffle:
            self._step = owner.add_state("order_step", tf.constant(0, tf.int64))

    def orders(self, num_tasks):
        """[T, T] int32: row i is a permutation of 0..T-1 (i itself is skipped by the caller)."""
        if not self.shuffle:
            return tf.tile(tf.range(num_tasks)[None], [num_tasks, 1])
        step = tf.convert_to_tensor(self._step)
        self._step.assign_add(1)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        noise = tf.random.stateless_uniform([num_tasks, num_tasks], seed=seed)
        return tf.argsort(noise, axis=1)
