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
  MGDA-UB is of MGDA. Expert outputs read only through gated mixtures give
  their part of K from the mixtures' gradients and the gates
  (``mixing_gram``): on the benchmark MMoE this took the fast step from
  1.2-1.5x to 1.04-1.16x an equal-weights step.

Both return (gradients in ``variables`` order, the task Gram matrix).
"""

import collections

from mtl_keras.backend import tf
from mtl_keras.gradients import ZERO, flatten, num_replicas, replica_sum, sources, task_gradient_matrix, unflatten
from mtl_keras.layers.representation import Mixing
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
    gram = replica_sum(representation_gram(tape, step.weighted, representations))
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


def representation_gram(tape, losses, representations):
    """K_ij = <dL_i/dR, dL_j/dR> over the recorded representations R (this replica's rows).

    A representation is a tensor, or the Mixing through which an expert
    stack's output is read; the Gram matrix of the concatenated gradients is
    the sum of the parts' Gram matrices.
    """
    tensors = [r for r in representations if not isinstance(r, Mixing)]
    parts = [mixing_gram(tape, losses, r) for r in representations if isinstance(r, Mixing)]
    if tensors:
        rows = [flatten(tape.gradient(loss, tensors, unconnected_gradients=ZERO)) for loss in losses]
        parts.append(gram_matrix(tf.cast(tf.stack(rows), tf.float32)))
    return tf.add_n(parts)


def mixing_gram(tape, losses, mixing):
    """The Gram matrix of the gradients w.r.t. an output H read only as m_k = sum_e g_k[b, e] H[b, e, :].

    Then dL_i/dH[b, e, :] = sum_k g_k[b, e] dL_i/dm_k[b, :], so
    K_ij = sum_b sum_{k, l} (g_k[b] . g_l[b]) (dL_i/dm_k[b] . dL_j/dm_l[b]):
    the same matrix as from the [B, E, H] gradients, from [B, H] gradients and
    the gates, with the pairs no gradient connects skipped. For an MMoE
    (each loss reads its own mix) that is T (T + 1) / 2 products of [B, H] rows.
    """
    gates = [tf.cast(g, tf.float32) for g in mixing.gates]
    grads = [
        [None if d is None else tf.cast(d, tf.float32) for d in tape.gradient(loss, mixing.mixes)]
        for loss in losses
    ]
    overlaps = {}

    def entry(i, j):
        terms = []
        for k, d_ik in enumerate(grads[i]):
            for l, d_jl in enumerate(grads[j]):
                if d_ik is None or d_jl is None:
                    continue
                if (k, l) not in overlaps:
                    overlaps[k, l] = tf.reduce_sum(gates[k] * gates[l], axis=-1)
                terms.append(tf.reduce_sum(overlaps[k, l] * tf.reduce_sum(d_ik * d_jl, axis=-1)))
        return tf.add_n(terms) if terms else tf.constant(0.0)

    count = len(losses)
    upper = {(i, j): entry(i, j) for i in range(count) for j in range(i, count)}
    return tf.stack([tf.stack([upper[min(i, j), max(i, j)] for j in range(count)]) for i in range(count)])
