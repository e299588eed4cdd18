"""One optimizer for the whole model, or one per group of variables; how they apply a step.

Groups: "shared" (variables reached by two or more tasks), each task name (the
variables only that task reaches), and "default" (everything else, and the
groups not given). Per-task optimizers let, say, a sparse CVR tower learn
with its own rate while the shared experts use another.
"""

import numpy as np

from mtl_keras.backend import IS_KERAS3, create_optimizer_slots, keras, strategy_supports_no_merge_call, tf

LossScaleOptimizer = (
    keras.optimizers.LossScaleOptimizer if IS_KERAS3 else keras.mixed_precision.LossScaleOptimizer
)


def resolve(optimizer, variable_tasks, variables, extra_variables, task_names):
    """(the model's main optimizer, [(optimizer, [variables])]).

    ``variable_tasks`` gives, for each of ``variables``, the tasks that reach it;
    ``extra_variables`` (a weighting's own) belong to "default".
    """
    if not isinstance(optimizer, dict):
        single = keras.optimizers.get(optimizer)
        return single, [(single, list(variables) + list(extra_variables))]
    known = {"shared", "default", *task_names}
    unknown = sorted(set(optimizer) - known)
    if unknown:
        raise ValueError(
            f"`optimizer` names unknown group(s) {unknown}; expected groups among "
            f"'shared', 'default' and the tasks {list(task_names)}."
        )
    optimizers = {group: keras.optimizers.get(value) for group, value in optimizer.items()}
    assignment = {}

    def place(group, variable):
        chosen = optimizers.get(group, optimizers.get("default"))
        if chosen is None:
            raise ValueError(
                f"`optimizer` has no group {group!r} and no 'default' for variable "
                f"{variable.name!r}; add one of them."
            )
        assignment.setdefault(id(chosen), (chosen, []))[1].append(variable)

    for variable, tasks in zip(variables, variable_tasks):
        if len(tasks) >= 2:
            place("shared", variable)
        elif len(tasks) == 1:
            place(next(iter(tasks)), variable)
        else:
            place("default", variable)
    for variable in extra_variables:
        place("default", variable)
    main = optimizers.get("default") or optimizers.get("shared") or next(iter(optimizers.values()))
    return main, list(assignment.values())


def build(groups):
    """Creates every group optimizer's slots now, so a restore finds them (Keras skips
    the saved state of an optimizer that is not built)."""
    for optimizer, variables in groups:
        if IS_KERAS3:
            if not optimizer.built:
                optimizer.build(variables)
        elif hasattr(optimizer, "build"):
            inner = optimizer.inner_optimizer if isinstance(optimizer, LossScaleOptimizer) else optimizer
            if not getattr(inner, "_built", False) and not getattr(inner, "built", False):
                optimizer.build(variables)
        else:
            create_optimizer_slots(optimizer, variables)


def with_loss_scaling(main, groups):
    """The groups, every optimizer loss-scaled when the main one is.

    Keras wraps the main optimizer in a LossScaleOptimizer under "mixed_float16"
    (or the user passes one). The other groups get a wrapper of their own with
    the same settings; ``apply`` keeps their scales equal by giving every group
    the same finiteness each step.
    """
    if not isinstance(main, LossScaleOptimizer):
        return groups
    wrapped = []
    for optimizer, variables in groups:
        if optimizer is not main and not isinstance(optimizer, LossScaleOptimizer):
            optimizer = LossScaleOptimizer(optimizer)
        wrapped.append((optimizer, variables))
    return wrapped


def loss_scale(main):
    """The factor the backward pass starts from: the dynamic loss scale, or None."""
    if not isinstance(main, LossScaleOptimizer):
        return None
    one = tf.constant(1.0)
    return tf.cast(main.scale_loss(one) if IS_KERAS3 else main.get_scaled_loss(one), tf.float32)


def apply(groups, gradients, variables, finite=None):
    """Applies true (unscaled) ``gradients``; with ``finite`` (a bool tensor) given,
    only when it holds (a skipped step, as a LossScaleOptimizer skips one)."""
    by_id = {id(v): g for v, g in zip(variables, gradients)}
    # Heads without a loss have no gradient: leave them out rather than warn each step.
    pairs = [
        (optimizer, [(by_id[id(v)], v) for v in group if by_id.get(id(v)) is not None])
        for optimizer, group in groups
    ]
    if any(isinstance(optimizer, LossScaleOptimizer) for optimizer, _ in groups):
        # Each LossScaleOptimizer checks finiteness and moves its scale itself; a
        # step that is bad anywhere is made bad everywhere, so all skip together.
        ok = all_finite(gradients) if finite is None else finite & all_finite(gradients)
        for optimizer, optimizer_pairs in pairs:
            optimizer.apply_gradients(
                [(_rescale(_poison(g, ok), optimizer), v) for g, v in optimizer_pairs]
            )
        return
    if finite is None:
        for optimizer, optimizer_pairs in pairs:
            optimizer.apply_gradients(optimizer_pairs)
        return
    _apply_if(finite, lambda: [o.apply_gradients(p) for o, p in pairs] and None)


def all_finite(tensors):
    checks = [
        tf.reduce_all(tf.math.is_finite(t.values if isinstance(t, tf.IndexedSlices) else t))
        for t in tensors
        if t is not None
    ]
    return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)


def _poison(gradient, ok):
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(_poison(gradient.values, ok), gradient.indices, gradient.dense_shape)
    return tf.where(ok, gradient, tf.constant(np.nan, gradient.dtype))


def _rescale(gradient, optimizer):
    """Keras 3's LossScaleOptimizer takes scaled gradients; tf_keras's, unscaled ones."""
    if not IS_KERAS3:
        return gradient
    factor = optimizer.scale_loss(tf.constant(1.0))
    if isinstance(gradient, tf.IndexedSlices):
        return tf.IndexedSlices(gradient.values * tf.cast(factor, gradient.values.dtype), gradient.indices, gradient.dense_shape)
    return gradient * tf.cast(factor, gradient.dtype)


def _apply_if(condition, apply_fn):
    """``apply_fn()`` when ``condition``; optimizers that merge across replicas need the
    cond in a cross-replica context (as Keras's LossScaleOptimizer does it)."""
    if strategy_supports_no_merge_call():
        tf.cond(condition, apply_fn, lambda: None)
        return

    def cross_replica(distribution, condition):
        first = distribution.experimental_local_results(condition)[0]
        tf.cond(first, lambda: distribution.extended.call_for_each_replica(apply_fn), lambda: None)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(condition,))


class FollowLearningRate(keras.callbacks.Callback):
    """Learning-rate callbacks (ReduceLROnPlateau, LearningRateScheduler) set the main
    optimizer's rate; this scales every other group's rate by the same factor.
    MultiTaskModel.fit adds it after the user's callbacks."""

    def __init__(self, main, others):
        super().__init__()
        self.main = main
        self.others = others
        self.last = None

    def _rate(self, optimizer):
        return float(np.asarray(tf.convert_to_tensor(optimizer.learning_rate)))

    def on_train_begin(self, logs=None):
        self.last = self._rate(self.main)

    def on_epoch_begin(self, epoch, logs=None):
        self._follow()

    def on_epoch_end(self, epoch, logs=None):
        self._follow()

    def _follow(self):
        current = self._rate(self.main)
        if self.last and current != self.last:
            for optimizer in self.others:
                optimizer.learning_rate = self._rate(optimizer) * current / self.last
        self.last = current
