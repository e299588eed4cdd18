"""Steps per execution, chosen for each ``fit`` call when ``compile`` leaves it unset.

Each call of Keras's compiled train function costs a fixed amount of Python
(the epoch iterator, the function's dispatch, every callback's batch hooks):
on a small model that is most of a step, and running several steps per call
made the small benchmark shapes 1.3-1.7x faster (docs/benchmarks.md,
"steps_per_execution"). Keras then calls batch-level hooks once per
execution, so several steps are taken only where no callback can tell: every
callback either has no batch hooks, or is one whose batch hooks only display
or check (the progress bar; the non-finite-loss stop, which names the exact
step from a variable the step sets; any callback with a true
``batch_hooks_per_execution`` attribute), or saves once per epoch. Under a
distribution strategy, with ``run_eagerly``, or when ``compile`` was given
``steps_per_execution``, Keras's own setting stands, as it does for
``evaluate`` and ``predict`` outside ``fit``. Under tf_keras the train
function is ``tf_keras_train_function``'s, which traces the step once.

Keras 3 runs whole executions: with ``steps_per_epoch`` or
``validation_steps`` that the number of steps does not divide, an epoch would
run past its end, so the number is the largest divisor of theirs up to
``AUTO_STEPS``.
"""

import contextlib
import inspect
import math

from mtl_keras.backend import keras, tf

AUTO_STEPS = 8

BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
               "on_test_batch_begin", "on_test_batch_end")


# Keras callbacks whose own batch hooks only display, or save on a schedule: when they do
# the same every N steps. The base class's hooks do nothing.
KNOWN = (
    (keras.callbacks.ProgbarLogger, lambda _: True),
    (keras.callbacks.ModelCheckpoint, lambda c: getattr(c, "save_freq", None) == "epoch"),
    (keras.callbacks.BackupAndRestore, lambda c: getattr(c, "save_freq", None) == "epoch"),
    (keras.callbacks.Callback, lambda _: True),
)


def _hooks(cls):
    return tuple(getattr(cls, hook, None) for hook in BATCH_HOOKS)


def per_execution_safe(callback):
    """Whether ``callback`` does the same with its batch hooks called once per execution.

    Keras's progress bar, and its checkpoints saving per epoch, qualify by their own hooks,
    so a subclass with hooks of its own does not."""
    if getattr(callback, "batch_hooks_per_execution", False):
        return True
    return any(isinstance(callback, base) and _hooks(type(callback)) == _hooks(base) and safe(callback)
               for base, safe in KNOWN)


def auto_steps(model, callbacks, fit_arguments):
    """The steps per execution for this ``fit`` call: ``AUTO_STEPS``, fewer, or 1.

    Args:
        model: the compiled model.
        callbacks: every callback of the call, the model's own included.
        fit_arguments: ``fit``'s arguments by name (``steps_per_epoch``,
            ``validation_steps`` are read).
    """
    distributed = tf.distribute.has_strategy() or model.distribute_strategy is not tf.distribute.get_strategy()
    if model.run_eagerly or distributed or not all(map(per_execution_safe, callbacks)):
        return 1
    common = math.gcd(*(int(fit_arguments.get(name) or 0) for name in ("steps_per_epoch", "validation_steps")))
    return max(n for n in range(1, AUTO_STEPS + 1) if common % n == 0)


def tf_keras_train_function(model, make, force):
    """tf_keras's train function (``make``, its ``make_train_function``); where it takes
    several steps a call, its one-step function in a loop whose outputs exist before it.

    tf_keras's own loop leaves them undefined until the first step, and autograph then
    traces the train step twice, once to find them (a tiny MMoE's first XLA ``fit``: 6.5 s
    against 3.8 s at one step a call). Here the one-step function is traced once, the loop
    starts from zeros of its outputs' structure (the logs: scalars), and it runs for the
    variable's steps (tf_keras lowers it for an epoch's last execution)."""
    steps, given = model.steps_per_execution, current_steps(model)
    if (model.train_function is not None and not force) or given == 1 or model.run_eagerly \
            or model._cluster_coordinator:
        return make(force)
    steps.assign(1)
    try:
        one_step = make(True)
    finally:
        steps.assign(given)

    def train_function(iterator):
        traced = one_step.get_concrete_function(iterator).structured_outputs
        outputs = tf.nest.map_structure(lambda t: tf.zeros(t.shape, t.dtype), traced)
        for _ in tf.range(steps):
            outputs = one_step(iterator)
        return outputs

    model.train_function = model.train_tf_function = tf.function(train_function, reduce_retracing=True)
    return model.train_function


def fit_arguments(fit, args, kwargs):
    """``fit``'s arguments by name, as Keras would bind them."""
    return inspect.signature(fit).bind_partial(*args, **kwargs).arguments


def current_steps(model):
    """The model's steps per execution as an int (a variable under tf_keras, mirrored under a
    strategy)."""
    steps = model.steps_per_execution
    return int(steps.numpy() if hasattr(steps, "numpy") else steps)


def set_steps(model, steps):
    """Sets the steps per execution, keeping the compiled train, test and predict functions of
    each setting (Keras traces them for a fixed number of steps a call): switching back and
    forth compiles nothing twice. ``model._mtl_step_functions`` holds them."""
    current = current_steps(model)
    if current == steps:
        return
    functions = model._mtl_step_functions
    functions[current] = (model.train_function, model.test_function, model.predict_function)
    model.steps_per_execution = steps
    model.train_function, model.test_function, model.predict_function = functions.pop(steps, (None,) * 3)


@contextlib.contextmanager
def steps_for_fit(model, callbacks, fit_arguments):
    """``auto_steps`` for the length of one ``fit`` call, 1 again after it: ``evaluate`` and
    ``predict`` (whose ``steps`` and callbacks fit does not see) run as Keras runs them.
    Nothing where ``compile`` set the steps (``model._mtl_step_functions`` is None)."""
    if model._mtl_step_functions is None:
        yield
        return
    set_steps(model, auto_steps(model, callbacks or [], fit_arguments))
    try:
        yield
    finally:
        set_steps(model, 1)
