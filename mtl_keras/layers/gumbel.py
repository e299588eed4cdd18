"""What the searched architectures share: Gumbel-softmax samples and a structure that is frozen."""

import numpy as np

from mtl_keras.backend import tf


def gumbel_softmax(logits, temperature, seed):
    """A relaxed one-hot sample over the last axis (Jang et al.; Maddison et al., ICLR 2017).

    ``softmax((logits + g) / temperature)``, ``g = -log(-log u)``, ``u ~ U(0, 1)``
    drawn statelessly from ``seed`` (an int64 [2] tensor), so it works in
    graphs and under XLA.

    Example:
    >>> sample = gumbel_softmax(tf.zeros([2, 3]), 1.0, tf.constant([0, 1], tf.int64))
    >>> np.allclose(np.asarray(tf.reduce_sum(sample, axis=-1)), 1.0)
    True
    """
    u = tf.random.stateless_uniform(tf.shape(logits), seed=seed, minval=1e-6, maxval=1.0 - 1e-6)
    return tf.nn.softmax((logits - tf.math.log(-tf.math.log(u))) / temperature, axis=-1)


def positive_temperature(name, value):
    if isinstance(value, bool) or not float(value) > 0.0:
        raise ValueError(f"`{name}` must be > 0; got {value!r}.")
    return float(value)


class LearntStructure:
    """Mixin for a layer whose discrete structure is searched, then frozen.

    While searching, the structure is a distribution (logits) sampled in
    training. ``freeze()`` fixes the most likely structure; from then on the
    layer computes only what that structure uses, in training and at
    inference, and the structure is part of the layer's config (a ``.keras``
    file reloads frozen). An export needs a frozen structure: ``export``
    calls ``check_frozen()`` and a searching layer raises a ValueError.
    Subclasses set ``STRUCTURE`` (the config key) and define
    ``most_likely()`` (the structure as nested lists of ints).
    """

    STRUCTURE = "structure"

    @property
    def frozen(self):
        return getattr(self, self.STRUCTURE) is not None

    def freeze(self):
        """Fixes the most likely structure and returns it (nested lists of ints)."""
        # A NumPy array: Keras would wrap a list attribute in its tracking types.
        setattr(self, self.STRUCTURE, np.asarray(self.most_likely(), "int64"))
        return self.structure_config()

    def structure_config(self):
        structure = getattr(self, self.STRUCTURE)
        return None if structure is None else np.asarray(structure).tolist()

    def check_frozen(self):
        if not self.frozen:
            raise ValueError(
                f"Layer {self.name!r} ({type(self).__name__}) is still searching its `{self.STRUCTURE}`: "
                "freeze it first (mtl_keras.models.freeze_structure(model)), then fine-tune and export."
            )

    def step_seed(self, salt):
        """The int64 [2] seed of this call's sample; advances the layer's step counter."""
        step = tf.convert_to_tensor(self.sample_step)
        self.sample_step.assign_add(1)
        return tf.stack([step, tf.constant(salt, tf.int64)]), step
