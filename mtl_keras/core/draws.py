"""Random draws that are the same on every replica, under XLA, and after a resume.

Each draw is stateless, seeded by (a fixed ``seed``, a step counter that is the
owner's saved training state): replicas compute the same numbers, and a run
restored from a checkpoint or a `.keras` file draws what the uninterrupted run
would have drawn. XLA's kernels draw other numbers than TensorFlow's for the same
seed, so that holds for one ``jit_compile`` choice (a `.keras` file keeps it).
"""

import random

from mtl_keras.backend import tf

SIMPLEX_DISTRIBUTIONS = ("normal", "uniform", "dirichlet")


def check_seed(seed, method):
    """``seed`` as an int (None: one drawn now, then part of the config).

    Args:
        seed: an int or None.
        method: the strategy's name, for the error message.

    Returns:
        The seed, an int.

    Raises:
        ValueError: when ``seed`` is neither an int nor None.

    Example:
    >>> check_seed(7, "RLW")
    7
    >>> check_seed(0.5, "RLW")
    Traceback (most recent call last):
    ...
    ValueError: RLW: `seed` must be an integer or None; got 0.5.
    """
    if seed is None:
        return random.randrange(2**31)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{method}: `seed` must be an integer or None; got {seed!r}.")
    return seed


class StepDraws:
    """Seeds for one draw per training step, from ``seed`` and a saved counter.

    Args:
        seed: the fixed part of every draw's seed (an int).

    Example:
    >>> from mtl_keras.core.stateful import StatefulObject
    >>> owner = StatefulObject()
    >>> draws = StepDraws(seed=7)
    >>> draws.build(owner)
    >>> first, second = draws.next_seed(), draws.next_seed()
    >>> bool(tf.reduce_all(first == second))
    False
    """

    def __init__(self, seed):
        self.seed = int(seed)

    def build(self, owner, name="draws"):
        self._count = owner.add_state(name, tf.constant(0, tf.int64))

    def current_seed(self):
        """The seed of the current draw, without moving on (evaluation reads it)."""
        return tf.stack([tf.constant(self.seed, tf.int64), tf.convert_to_tensor(self._count)])

    def advance(self):
        self._count.assign_add(1)

    def next_seed(self):
        """The current seed, and the counter moves on."""
        seed = self.current_seed()
        self.advance()
        return seed


def simplex_weights(distribution, seed, num_tasks):
    """[T] random weights summing to 1 (Lin et al., TMLR 2022: random weighting).

    "normal": softmax(z), z ~ N(0, I) (the paper's default); "uniform":
    softmax(u), u ~ U(0, 1)^T; "dirichlet": Dir(1, ..., 1), as normalised
    Exp(1) samples.

    Args:
        distribution: "normal", "uniform" or "dirichlet".
        seed: a stateless seed, shape [2] (``StepDraws.next_seed()``).
        num_tasks: T.

    Returns:
        A float32 tensor [T] of non-negative weights summing to 1.

    Example:
    >>> weights = simplex_weights("dirichlet", tf.constant([1, 2], tf.int64), 3)
    >>> weights.shape, round(float(tf.reduce_sum(weights)), 5)
    (TensorShape([3]), 1.0)
    """
    shape = [num_tasks]
    if distribution == "normal":
        return tf.nn.softmax(tf.random.stateless_normal(shape, seed))
    uniform = tf.random.stateless_uniform(shape, seed)
    if distribution == "uniform":
        return tf.nn.softmax(uniform)
    exponential = -tf.math.log1p(-uniform)
    return exponential / tf.reduce_sum(exponential)
