"""What the tasks share: which tasks reach which variables, and the shared representation."""

from mtl_keras.backend import all_layers, tf
from mtl_keras.layers.representation import RecordsRepresentation


def variable_tasks(model, tasks):
    """For each of ``model.trainable_variables``, the set of tasks that reach it.

    A variable is reached by a task when the task's output has a gradient path
    to it. The forward pass is traced in a tf.function that is never run, so
    nothing (moving statistics, seeds) changes, and ``training=True`` paths
    (dropout, sampled routes) count as they do in the train step.
    """
    variables = model.trainable_variables
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), model.input)
    reached = [set() for _ in variables]

    def trace(inputs):
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(inputs, training=True)
        for task in tasks:
            for index, grad in enumerate(tape.gradient(outputs[task], variables)):
                if grad is not None:
                    reached[index].add(task)
        return tf.constant(0)

    trace_once(trace, specs)
    return reached


def shared_variables(variables, reached):
    """The variables reached by two or more tasks (``reached``: a set of tasks per variable)."""
    return [v for v, by in zip(variables, reached) if len(by) >= 2]


def trace_once(fn, spec, autograph=False):
    """Traces ``fn(spec)`` in a tf.function that is never run; under a strategy, in a
    replica context, where alone distributed variables (one replica or many) are read."""
    traced = tf.function(fn, autograph=autograph)
    if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
        tf.distribute.get_strategy().run(lambda: traced.get_concrete_function(spec) and None)
    else:
        traced.get_concrete_function(spec)


def representation_layers(model, required=True):
    """The layers whose recorded outputs stand for the shared variables in fast projections:
    shared expert stacks and SharedRepresentation markers (none found: an error, or [] when
    not ``required``)."""
    shared = {id(v) for v in model.shared_variables}
    layers = [
        layer
        for layer in all_layers(model)
        if isinstance(layer, RecordsRepresentation)
        and all(id(v) in shared for v in layer.trainable_variables)
    ]
    if not layers and required:
        raise ValueError(
            "`projection_mode='fast'` needs a shared representation: shared expert stacks "
            "(ExpertGate, CGCLayer, PLE) or a mtl_keras.layers.SharedRepresentation layer "
            "on the tensor every task reads."
        )
    return layers


def read_only_through(targets, representations):
    """Whether a backward pass from ``targets`` may start at ``representations`` instead.

    True when, in the graph being traced, no variable is read both upstream of a
    representation and on a path from a target that goes around them all, and no
    representation is upstream of another (PLE's levels): then, by the chain rule,
    every variable upstream of them gets from sum_t dL/dR_t . dR_t/dv the same
    gradient as from the targets. A read is any op's resource input other than a
    dataset iterator's, more than the variables, so that False is the safe answer
    (and the one when eager).
    """
    tensors = list(targets) + list(representations)
    if tf.executing_eagerly() or not all(hasattr(t, "op") for t in tensors):
        return False
    stops = {t.ref() for t in representations}
    around, _ = _reads(targets, stops)
    upstream, nested = _reads(representations, stops)
    return not nested and not around & upstream


def _reads(tensors, stops):
    """(the resource handles read on the paths into ``tensors``, whether a path crosses one of
    ``stops``); paths end at ``stops``."""
    handles, crossed, seen, pending = set(), False, set(), [t.op for t in tensors]
    while pending:
        op = pending.pop()
        if op in seen:
            continue
        seen.add(op)
        for tensor in op.inputs:
            if tensor.ref() in stops:
                crossed = True
                continue
            if tensor.dtype == tf.resource and "Iterator" not in op.type:
                handles.add(tensor.ref())
            pending.append(tensor.op)
    return handles, crossed
