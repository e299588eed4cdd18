"""MTL-NAS: NDDR-style fusion edges between task columns, searched with minimum entropy."""

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.gumbel import LearntStructure
from mtl_keras.layers.nddr import FusedOutputs

PHASES = ("search", "fixed")


@register
class SearchedFusion(LearntStructure, FusedOutputs, keras.layers.Layer):
    """One level of MTL-NAS: each task column fused with searched edges from the other columns.

    Gao et al., "MTL-NAS: Task-Agnostic Neural Architecture Search towards
    General-Purpose Multi-Task Learning", CVPR 2020. At level j, the target
    (task t, level j) may receive an edge from every other task's column at
    every level i <= j. With ``h`` the column outputs and, while searching,
    ``alpha_e = sigmoid(beta_e)``:

    ``y_t = act(BN_t(h_tj W_t + sum_e alpha_e h_e W_e))``

    (NDDR's reduction of the concatenation [h_tj, alpha_e h_e, ...]; W_t
    starts at ``diagonal * I``, each W_e at ``off_diagonal * I``). The search
    is the paper's single-shot gradient method: beta learns with the network
    weights on the same batches, and the minimum-entropy regulariser
    ``entropy_weight * sum_e -(alpha_e log alpha_e + (1 - alpha_e) log(1 - alpha_e))``
    (``add_loss``, training) pushes every alpha to 0 or 1 so that keeping the
    edges with alpha > 0.5 changes the network little. ``freeze()`` keeps
    those edges (``edges`` in the config, [T, E] of 0/1); a frozen layer
    fuses only the kept edges, each with weight 1. ``phase="fixed"`` builds
    the kernels of the given ``edges`` only (the paper's retraining of the
    found architecture); ``"search"`` builds every candidate's.

    Args:
        num_tasks: T (>= 2).
        level: j (>= 0); the inputs are the T column outputs of levels 0..j.
        phase: "search" or "fixed" (which needs ``edges``).
        edges: [T, (T - 1)(j + 1)] of 0/1, the candidates of target t in the
            order (level i = 0..j, then task s != t); None while searching.
        entropy_weight: lambda of the minimum-entropy term (>= 0).
        diagonal, off_diagonal: the NDDR initialisation.
        batch_norm, activation, momentum, epsilon: as ``NDDR``.
        kernel_regularizer, bias_regularizer: as ``keras.layers.Dense``.

    Call arguments:
        inputs: the column outputs level-major, ``[h_00, ..., h_0(T-1), ...,
            h_j0, ..., h_j(T-1)]``, each ``[B, C_i]``.
        training: batch statistics and the regulariser in training.

    Returns:
        A list of T tensors ``[B, C_j]``.

    Example:
    >>> fusion = SearchedFusion(num_tasks=2, level=1)
    >>> [tuple(y.shape) for y in fusion([tf.ones([3, 4])] * 2 + [tf.ones([3, 5])] * 2, training=True)]
    [(3, 5), (3, 5)]
    >>> np.asarray(fusion.freeze()).shape   # two candidates per target: task s at level 0 and 1
    (2, 2)
    """

    STRUCTURE = "edges"

    def __init__(
        self,
        num_tasks,
        level,
        phase="search",
        edges=None,
        entropy_weight=0.1,
        diagonal=0.9,
        off_diagonal=0.1,
        batch_norm=True,
        activation="relu",
        momentum=0.99,
        epsilon=1e-3,
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks, minimum=2)
        self.level = checks.positive_int("level", level, minimum=0)
        if phase not in PHASES:
            raise ValueError(f"`phase` must be one of {PHASES}; got {phase!r}.")
        if phase == "fixed" and edges is None:
            raise ValueError("`edges` must be given with phase='fixed' (the edges the search kept).")
        self.phase = phase
        self.edges = None if edges is None else self._checked_edges(edges)
        if not float(entropy_weight) >= 0.0:
            raise ValueError(f"`entropy_weight` must be >= 0; got {entropy_weight!r}.")
        self.entropy_weight = float(entropy_weight)
        self.diagonal, self.off_diagonal = float(diagonal), float(off_diagonal)
        self.kernel_args = conventions.resolve(
            kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer
        )
        self.init_outputs(self.num_tasks, batch_norm, activation, momentum, epsilon)

    def sources(self, target):
        """The candidate sources (level, task) of ``target``, in the order of its edges: the
        other tasks' columns at every level up to this one."""
        return [(i, s) for i in range(self.level + 1) for s in range(self.num_tasks) if s != target]

    def _checked_edges(self, edges):
        array = np.asarray(edges)
        shape = (self.num_tasks, (self.num_tasks - 1) * (self.level + 1))
        if array.shape != shape or not np.isin(array, (0, 1)).all():
            raise ValueError(f"`edges` must be {list(shape)} of 0 and 1; got {edges!r}.")
        return array.astype("int64")

    def build(self, inputs_shape):
        shapes = checks.shape_list(inputs_shape)
        expected = self.num_tasks * (self.level + 1)
        if shapes is None or len(shapes) != expected or any(s.rank != 2 for s in shapes):
            raise ValueError(
                f"SearchedFusion(level={self.level}) `inputs` must be the {expected} column outputs "
                f"[B, C] of levels 0..{self.level}, level-major; got {inputs_shape}."
            )
        widths = [s[-1] for s in shapes]
        for i in range(self.level + 1):
            level_widths = set(widths[i * self.num_tasks:(i + 1) * self.num_tasks])
            if len(level_widths) != 1:
                raise ValueError(f"SearchedFusion `inputs` of level {i} must share one width; got {level_widths}.")
        width = widths[-1]
        self.own_kernels, self.edge_kernels = [], []
        for t in range(self.num_tasks):
            self.own_kernels.append(self._identity_kernel(f"kernel_{t}", width, width, self.diagonal))
            # None where the fixed phase has no edge; one variable per edge, so an export keeps the kept ones
            self.edge_kernels.append([
                self._identity_kernel(f"kernel_{t}_from_{i}_{s}", widths[i * self.num_tasks + s], width,
                                      self.off_diagonal)
                if self.phase == "search" or self.edges[t, e] else None
                for e, (i, s) in enumerate(self.sources(t))
            ])
        self.biases = None if self.batch_norm else [
            conventions.add_bias(self, self.kernel_args, f"bias_{t}", (width,)) for t in range(self.num_tasks)
        ]
        if self.phase == "search":
            self.edge_logits = self.add_weight(
                name="edge_logits", shape=(self.num_tasks, len(self.sources(0))), initializer="zeros"
            )
        self.build_outputs(width)
        super().build(inputs_shape)

    def _identity_kernel(self, name, rows, columns, scale):
        return self.add_weight(
            name=name, shape=(rows, columns),
            initializer=keras.initializers.Constant(scale * np.eye(rows, columns, dtype="float32")),
            regularizer=self.kernel_args["kernel_regularizer"],
        )

    def edge_weights(self):
        """alpha = sigmoid(beta), [T, E] (searching)."""
        return tf.sigmoid(tf.convert_to_tensor(self.edge_logits))

    def most_likely(self):
        return (np.asarray(self.edge_weights()) > 0.5).astype("int64")

    def entropy(self):
        alpha = tf.clip_by_value(self.edge_weights(), 1e-7, 1.0 - 1e-7)
        return -tf.reduce_sum(alpha * tf.math.log(alpha) + (1.0 - alpha) * tf.math.log(1.0 - alpha))

    def call(self, inputs, training=None):
        inputs = list(inputs)
        if self.frozen:
            weights = self.edges
        else:
            weights = self.edge_weights()
            if training:
                self.add_loss(self.entropy_weight * self.entropy())
        outputs = []
        for t in range(self.num_tasks):
            y = inputs[self.level * self.num_tasks + t] @ self.own_kernels[t]
            for e, (i, s) in enumerate(self.sources(t)):
                if self.frozen and not weights[t, e]:
                    continue  # a dropped edge is not computed
                fused = inputs[i * self.num_tasks + s] @ self.edge_kernels[t][e]
                y += fused if self.frozen else weights[t, e] * fused
            outputs.append(self.fused_output(t, y, None if self.biases is None else self.biases[t], training))
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            level=self.level,
            phase=self.phase,
            edges=self.structure_config(),
            entropy_weight=self.entropy_weight,
            diagonal=self.diagonal,
            off_diagonal=self.off_diagonal,
            **self.outputs_config(),
            kernel_regularizer=conventions.serialize(self.kernel_args)["kernel_regularizer"],
            bias_regularizer=conventions.serialize(self.kernel_args)["bias_regularizer"],
        )
        return config
