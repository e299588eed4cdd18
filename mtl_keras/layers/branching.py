"""Learning to Branch: a tree of shared and branched layers, searched with Gumbel-softmax."""

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.gumbel import GumbelSearch, gumbel_softmax


@register
class BranchingLayers(GumbelSearch, keras.layers.Layer):
    """A super-graph of branch nodes whose parents are searched, then frozen to a tree.

    Guo et al., "Learning to Branch for Multi-Task Learning", ICML 2020.
    Level l holds ``branches[l]`` nodes, each a ReLU Dense of ``units[l]``.
    Level 0 reads the input; node i of level l > 0 reads one node of level
    l - 1, and task k reads one node of the last level. Each such choice has
    logits over the candidate parents.

    - Search (training): node i of level l reads ``sum_j d_ij h_{l-1, j}``,
      ``d_i`` a Gumbel-softmax sample of its logits at temperature
      ``temperature * temperature_decay ** (step // steps_per_epoch)``;
      each task's output mixes the last level the same way.
    - Search (inference): each node and task reads its most likely parent.
    - ``freeze()``: fixes the most likely parents (kept in the config as
      ``parents``, one flat list: level 1's nodes, level 2's, ..., then the
      tasks). The frozen tree computes only the nodes some task descends
      from; one task's export computes only its own path.

    Args:
        num_tasks: T (>= 2).
        units: width of each level (int or tuple).
        branches: nodes per level (int or tuple; None: T per level).
        temperature, temperature_decay: the Gumbel-softmax schedule (> 0).
        steps_per_epoch: training calls per epoch of the schedule.
        parents: a frozen tree (flat list as above); None while searching.
        seed: salt of the sampling.
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense``, for every node.

    Call arguments:
        inputs: ``[B, D]``.
        training: sample the parents (searching) or not.

    Returns:
        A list of T tensors ``[B, units[-1]]``.

    Example:
    >>> tree = BranchingLayers(num_tasks=2, units=(4, 3))
    >>> [tuple(h.shape) for h in tree(tf.ones([5, 6]), training=True)]
    [(5, 3), (5, 3)]
    >>> len(tree.freeze())   # level 1's two nodes, then the two tasks
    4
    """

    STRUCTURE = "parents"

    def __init__(
        self,
        num_tasks,
        units,
        branches=None,
        temperature=5.0,
        temperature_decay=0.965,
        steps_per_epoch=100,
        parents=None,
        seed=0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks, minimum=2)
        self.units = checks.units("units", units)
        branches = checks.units("branches", num_tasks if branches is None else branches)
        if len(branches) == 1:
            branches = branches * len(self.units)
        if len(branches) != len(self.units):
            raise ValueError(
                f"`branches` must have one entry or one per level of `units` ({len(self.units)}); got {branches}."
            )
        self.branches = branches
        self.init_search(temperature, temperature_decay, steps_per_epoch, seed)
        # (number of choosers, number of candidates) per choice: levels 1.., then the tasks
        self.choices = [(self.branches[l], self.branches[l - 1]) for l in range(1, len(self.units))]
        self.choices.append((self.num_tasks, self.branches[-1]))
        self.parents = None if parents is None else self._checked_parents(parents)
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )

    def _checked_parents(self, parents):
        flat = np.asarray(parents)
        limits = np.concatenate([[candidates] * choosers for choosers, candidates in self.choices])
        if flat.shape != limits.shape or (flat < 0).any() or (flat >= limits).any():
            raise ValueError(
                f"`parents` must list {len(limits)} parent indices (each level's nodes, then the tasks), "
                f"each below its level's branch count {limits.tolist()}; got {parents!r}."
            )
        return flat.astype("int64")

    def build(self, inputs_shape):
        shape = tf.TensorShape(inputs_shape)
        if shape.rank != 2 or shape[-1] is None:
            raise ValueError(f"BranchingLayers `inputs` must be one tensor [B, D]; got {inputs_shape}.")
        args, fan_in = self.kernel_args, shape[-1]
        self.nodes = []
        for level, (width, count) in enumerate(zip(self.units, self.branches)):
            self.nodes.append([
                [
                    conventions.add_kernel(self, args, f"kernel_{level}_{i}", (fan_in, width), (fan_in, width)),
                    conventions.add_bias(self, args, f"bias_{level}_{i}", (width,)),
                ]
                for i in range(count)
            ])
            fan_in = width
        self.parent_logits = [
            self.add_weight(name=f"parent_logits_{c}", shape=shape_, initializer="zeros")
            for c, shape_ in enumerate(self.choices)
        ]
        self.add_sample_step()
        super().build(inputs_shape)

    def node(self, level, index, h):
        kernel, bias = self.nodes[level][index]
        return tf.nn.relu(h @ kernel + bias)

    def most_likely(self):
        return np.concatenate([np.argmax(np.asarray(logits), axis=-1) for logits in self.parent_logits])

    def tree(self, flat):
        """The flat parents split per choice: [level 1's parents, ..., the tasks' parents]."""
        cuts = np.cumsum([choosers for choosers, _ in self.choices])[:-1]
        return [part.tolist() for part in np.split(np.asarray(flat), cuts)]

    def call(self, inputs, training=None):
        if self.frozen:
            return self.run_tree(inputs, self.tree(self.parents))
        if training:
            seed, step = self.step_seed(self.seed)
            tau = self.temperature_at(self.epoch(step))
            mixing = [
                # one noise stream per choice: the seed's salt shifted by the choice's index
                gumbel_softmax(tf.convert_to_tensor(logits), tau, seed + tf.constant([0, 7919 * (c + 1)], tf.int64))
                for c, logits in enumerate(self.parent_logits)
            ]
            return self.run_mixed(inputs, mixing)
        if tf.executing_eagerly():
            return self.run_tree(inputs, self.tree(self.most_likely()))
        mixing = [
            tf.one_hot(tf.argmax(tf.convert_to_tensor(logits), axis=-1), logits.shape[-1], dtype=inputs.dtype)
            for logits in self.parent_logits
        ]
        return self.run_mixed(inputs, mixing)

    def run_mixed(self, inputs, mixing):
        """Every node, each reading its parents mixed by ``mixing[c]`` [choosers, candidates]."""
        level = [self.node(0, i, inputs) for i in range(self.branches[0])]
        for l, weights in enumerate(mixing):
            stacked = tf.stack(level)  # [candidates, B, H]
            mixed = tf.unstack(tf.einsum("cj,jbh->cbh", weights, stacked), num=weights.shape[0])
            level = mixed if l == len(mixing) - 1 else [self.node(l + 1, i, x) for i, x in enumerate(mixed)]
        return level

    def run_tree(self, inputs, tree):
        """Only the nodes on the tasks' paths, each once."""
        computed = {}

        def output(level, index):
            if (level, index) not in computed:
                parent = inputs if level == 0 else output(level - 1, tree[level - 1][index])
                computed[level, index] = self.node(level, index, parent)
            return computed[level, index]

        return [output(len(self.units) - 1, parent) for parent in tree[-1]]

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            units=list(self.units),
            branches=list(self.branches),
            parents=self.structure_config(),
            **self.search_config(),
            **conventions.serialize(self.kernel_args),
        )
        return config
