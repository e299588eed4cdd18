"""What the searched architectures share: Gumbel-softmax samples and a structure that is frozen."""

import numpy as np

from mtl_keras.backend import tf
from mtl_keras.layers import checks


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


class GumbelSearch(LearntStructure):
    """A ``LearntStructure`` sampled by Gumbel-softmax at an annealed temperature (AdaShare, Learning to Branch).

    ``tau = temperature * temperature_decay ** epoch``, ``epoch = step //
    steps_per_epoch``, ``step`` the training calls so far (``sample_step``, a
    non-trainable int64 weight, so a resumed search goes on from its epoch).
    A subclass calls ``init_search`` in ``__init__`` and ``add_sample_step``
    in ``build``, and puts ``search_config()`` in its config.

    Example:
    >>> from mtl_keras.layers import AdaShareBlocks
    >>> blocks = AdaShareBlocks(2, 1, temperature=2.0, temperature_decay=0.5, steps_per_epoch=3)
    >>> float(blocks.temperature_at(tf.constant(2, tf.int64)))   # epoch 2: 2 * 0.5 ** 2
    0.5
    """

    def init_search(self, temperature, temperature_decay, steps_per_epoch, seed):
        self.temperature = positive_temperature("temperature", temperature)
        self.temperature_decay = positive_temperature("temperature_decay", temperature_decay)
        self.steps_per_epoch = checks.positive_int("steps_per_epoch", steps_per_epoch)
        self.seed = int(seed)

    def add_sample_step(self):
        self.sample_step = self.add_weight(
            name="sample_step", shape=(), dtype="int64", initializer="zeros", trainable=False
        )

    def epoch(self, step=None):
        """The schedule's epoch at ``step`` (None: the training calls so far)."""
        step = tf.convert_to_tensor(self.sample_step) if step is None else step
        return step // self.steps_per_epoch

    def temperature_at(self, epoch):
        return self.temperature * tf.pow(self.temperature_decay, tf.cast(epoch, tf.float32))

    def step_seed(self, salt):
        """The int64 [2] seed of this call's sample; advances the layer's step counter."""
        step = tf.convert_to_tensor(self.sample_step)
        self.sample_step.assign_add(1)
        return tf.stack([step, tf.constant(salt, tf.int64)]), step

    def search_config(self):
        return dict(
            temperature=self.temperature,
            temperature_decay=self.temperature_decay,
            steps_per_epoch=self.steps_per_epoch,
            seed=self.seed,
        )
