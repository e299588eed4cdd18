"""Gradients of a train step whose shared variables are projected.

Task-specific variables always get the gradient of the weighted loss. For the
shared ones there are two modes:

- "exact": the per-task gradients of the shared variables (one backward per
  task), summed over replicas *before* they are combined; each replica then
  applies 1/R of the combination, which the optimizer's sum over replicas
  restores exactly once.
- "fast": the Gram matrix K from each task's gradient with respect to the
  shared representation (cheap: no weight gradients), summed over replicas
  (rows are examples, so replicas add); the coefficients a from K; then one
  backward of sum_k a_k L_k, whose sum over replicas is the global one. An
  approximation of the exact combination (LibMTL's ``rep_grad`` idea), as
  MGDA-UB is of MGDA.

Both return (gradients in ``variables`` order, the task Gram matrix).
"""

import collections

from mtl_keras.backend import tf
from mtl_keras.gradients import ZERO, flatten, num_replicas, replica_sum, sources, task_gradient_matrix, unflatten
from mtl_keras.losses.projection import gram_matrix

# What a weighting's ``update`` and the gradient modes see of a train step.
TrainStep = collections.namedtuple(
    "TrainStep", "tape task_losses task_loss_shares weighted weighted_vector extra loss"
)


def exact(tape, step, variables, shared, projection, method):
    shared_ids = {id(v) for v in shared}
    others = [v for v in variables if id(v) not in shared_ids]
    gradients = dict(zip(map(id, others), tape.gradient(step.loss, others)))
    targets = step.weighted if method == "loop" else step.weighted_vector
    matrix = replica_sum(task_gradient_matrix(tape, targets, shared, method))
    gram = gram_matrix(matrix)
    if projection is not None:
        combined = projection.combine_with_gram(matrix, gram, step.task_losses)
    else:
        combined = tf.reduce_sum(matrix, axis=0)
    combined = combined / num_replicas() + flatten(
        tape.gradient(step.extra, sources(shared), unconnected_gradients=ZERO)
    )
    gradients.update(zip(map(id, shared), unflatten(combined, shared)))
    return [gradients[id(v)] for v in variables], gram


def fast(tape, step, variables, shared, projection, representations):
    shared_ids = {id(v) for v in shared}
    others = [v for v in variables if id(v) not in shared_ids]
    gradients = dict(zip(map(id, others), tape.gradient(step.loss, others)))
    rows = tf.stack(
        [flatten(tape.gradient(loss, representations, unconnected_gradients=ZERO)) for loss in step.weighted]
    )
    gram = replica_sum(gram_matrix(rows))
    if projection is not None:
        coefficients = tf.stop_gradient(projection.coefficients(gram, step.task_losses))
    else:
        coefficients = tf.ones([len(step.weighted)])
    shared_gradients = tape.gradient(
        [step.weighted_vector, step.extra],
        sources(shared),
        output_gradients=[coefficients, tf.ones_like(step.extra)],
        unconnected_gradients=ZERO,
    )
    gradients.update(zip(map(id, shared), shared_gradients))
    return [gradients[id(v)] for v in variables], gram
