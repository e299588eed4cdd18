"""Expert balance: usage statistics of a gate and the load-balancing losses that keep experts in use."""

import numpy as np

from mtl_keras.backend import tf

FORMS = ("cv", "switch")


def check_balance(balance_penalty, balance_form):
    """(penalty, form) after the checks every gating layer makes."""
    if not float(balance_penalty) >= 0.0:
        raise ValueError(f"`balance_penalty` must be >= 0; got {balance_penalty!r}.")
    if balance_form not in FORMS:
        raise ValueError(f"`balance_form` must be one of {FORMS}; got {balance_form!r}.")
    return float(balance_penalty), balance_form


def balance_loss(gate, form="cv"):
    """A load-balancing loss of one gate's weights ``gate`` [B, E] over a batch.

    - ``"cv"``: the squared coefficient of variation of the experts' importance
      I_e = sum_b gate[b, e] (Shazeer et al., "Outrageously Large Neural
      Networks", ICLR 2017): ``Var(I) / mean(I)^2``, 0 when every expert gets
      the same total weight.
    - ``"switch"``: ``E * sum_e f_e P_e`` with f_e the share of rows whose
      largest weight is expert e and P_e the mean weight of e (Fedus et al.,
      "Switch Transformers", JMLR 2022); its minimum 1 is reached by uniform
      routing. f_e carries no gradient; P_e does.

    Example:
    >>> float(balance_loss(tf.constant([[0.5, 0.5], [0.5, 0.5]])))
    0.0
    >>> float(balance_loss(tf.constant([[1.0, 0.0], [1.0, 0.0]]), form="switch"))
    2.0
    """
    if form == "cv":
        importance = tf.reduce_sum(gate, axis=0)
        mean = tf.reduce_mean(importance)
        return tf.reduce_mean(tf.square(importance - mean)) / (tf.square(mean) + 1e-10)
    experts = tf.shape(gate)[-1]
    chosen = tf.reduce_mean(tf.one_hot(tf.argmax(gate, axis=-1), experts, dtype=gate.dtype), axis=0)
    return tf.cast(experts, gate.dtype) * tf.reduce_sum(tf.stop_gradient(chosen) * tf.reduce_mean(gate, axis=0))


def usage_statistics(mean_gate):
    """Per gate, from its mean weights over a batch ``mean_gate`` [E] (or [G, E], one row per gate):
    the entropy of the mean distribution (nats; log E when all experts are used alike), the share
    of the most used expert, and the number of experts above 1 % of the weight.

    Example:
    >>> stats = usage_statistics(np.array([0.7, 0.295, 0.005]))
    >>> round(stats["entropy"], 3), round(stats["max_share"], 3), stats["experts_used"]
    (0.636, 0.7, 2)
    """
    mean_gate = np.asarray(mean_gate, dtype=np.float64)
    share = mean_gate / np.maximum(mean_gate.sum(axis=-1, keepdims=True), 1e-12)
    entropy = -np.sum(np.where(share > 0, share * np.log(np.where(share > 0, share, 1.0)), 0.0), axis=-1)
    stats = {"entropy": entropy, "max_share": share.max(axis=-1), "experts_used": (share > 0.01).sum(axis=-1)}
    if mean_gate.ndim == 1:
        return {"entropy": float(stats["entropy"]), "max_share": float(stats["max_share"]),
                "experts_used": int(stats["experts_used"])}
    return stats
