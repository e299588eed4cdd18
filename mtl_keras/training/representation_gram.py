"""The task Gram matrix from the gradients with respect to a shared representation (fast mode's K).

A representation is a recorded tensor, or the Mixing through which an expert stack's output is
read (``layers.representation``); each task's gradients with respect to the recorded tensors are
taken once and serve both the Gram matrix and fast mode's backward pass from them.
"""

from mtl_keras.backend import tf
from mtl_keras.core.gram import gram_matrix
from mtl_keras.core.task_gradients import flatten, unscaled_gradient
from mtl_keras.layers.representation import Mixing


def representation_gradients(tape, losses, representations, scale=None):
    """``(tensors, per_task)``: the recorded tensors (each Mixing's mixes, then the plain
    representations) and, for each loss, its gradients with respect to them (None where
    unconnected), one backward pass per loss."""
    tensors = recorded_tensors(representations)
    return tensors, [unscaled_gradient(tape, loss, tensors, scale, unconnected=None) for loss in losses]


def recorded_tensors(representations):
    """Each Mixing's mixes, then the plain representations: the tensors the gradients are taken at."""
    return [m for r in representations if isinstance(r, Mixing) for m in r.mixes] + [
        r for r in representations if not isinstance(r, Mixing)]


def representation_gram(tape, losses, representations, scale=None):
    """K_ij = <dL_i/dR, dL_j/dR> over the recorded representations R (this replica's rows).

    A representation is a tensor, or the Mixing through which an expert
    stack's output is read; the Gram matrix of the concatenated gradients is
    the sum of the parts' Gram matrices.
    """
    return gram_of_gradients(representations, representation_gradients(tape, losses, representations, scale)[1])


def gram_of_gradients(representations, per_task):
    """``representation_gram`` from ``representation_gradients``' per-task gradients."""
    parts, start = [], 0
    for mixing in (r for r in representations if isinstance(r, Mixing)):
        stop = start + len(mixing.mixes)
        parts.append(mixing_gram(mixing, [task[start:stop] for task in per_task]))
        start = stop
    tensors = [r for r in representations if not isinstance(r, Mixing)]
    if tensors:
        rows = [flatten([tf.zeros_like(t) if g is None else g for t, g in zip(tensors, task[start:])])
                for task in per_task]
        parts.append(gram_matrix(tf.stack(rows)))
    return tf.add_n(parts)


def mixing_gram(mixing, grads):
    """The Gram matrix of the gradients w.r.t. an output H read only as m_k = sum_e g_k[b, e] H[b, e, :],
    from ``grads[i][k]`` = dL_i/dm_k (None where unconnected).

    Then dL_i/dH[b, e, :] = sum_k g_k[b, e] dL_i/dm_k[b, :], so
    K_ij = sum_b sum_{k, l} (g_k[b] . g_l[b]) (dL_i/dm_k[b] . dL_j/dm_l[b]):
    the same matrix as from the [B, E, H] gradients, from [B, H] gradients and
    the gates, with the pairs no gradient connects skipped. For an MMoE
    (each loss reads its own mix) that is T (T + 1) / 2 products of [B, H] rows.
    """
    gates = [tf.cast(g, tf.float32) for g in mixing.gates]
    grads = [[None if d is None else tf.cast(d, tf.float32) for d in task] for task in grads]
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

    count = len(grads)
    upper = {(i, j): entry(i, j) for i in range(count) for j in range(i, count)}
    return tf.stack([tf.stack([upper[min(i, j), max(i, j)] for j in range(count)]) for i in range(count)])
