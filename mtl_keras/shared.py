"""Which tasks reach which trainable variables, read off the model's graph."""

from mtl_keras.backend import tf


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

    @tf.function(autograph=False)
    def trace(inputs):
        with tf.GradientTape(persistent=True) as tape:
            outputs = model(inputs, training=True)
        for task in tasks:
            for index, grad in enumerate(tape.gradient(outputs[task], variables)):
                if grad is not None:
                    reached[index].add(task)
        return tf.constant(0)

    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1 and tf.distribute.in_cross_replica_context():
        # Distributed variables can only be read in a replica context.
        strategy.run(lambda: trace.get_concrete_function(specs) and None)
    else:
        trace.get_concrete_function(specs)
    return reached
