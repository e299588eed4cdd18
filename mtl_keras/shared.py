"""Which trainable variables are shared by tasks, read off the model's graph."""

from mtl_keras.backend import tf


def shared_variable_mask(model, tasks):
    """For each of ``model.trainable_variables``: is it reached by two or more tasks?

    A variable is reached by a task when the task's output has a gradient path
    to it. The forward pass is traced in a tf.function that is never run, so
    nothing (moving statistics, seeds) changes, and ``training=True`` paths
    (dropout, sampled routes) count as they do in the train step.
    """
    variables = model.trainable_variables
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), model.input)
    reached = [0] * len(variables)

    @tf.function(autograph=False)
    def trace(inputs):
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(inputs, training=True)
        for task in tasks:
            for index, grad in enumerate(tape.gradient(outputs[task], variables)):
                reached[index] += grad is not None
        return tf.constant(0)

    trace.get_concrete_function(specs)
    return [count >= 2 for count in reached]
