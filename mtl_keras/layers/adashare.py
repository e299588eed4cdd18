"""AdaShare: a shared stack of residual blocks, each task learning which blocks to run."""

import numpy as np

from mtl_keras.backend import keras, register, tf
from mtl_keras.layers import checks, conventions
from mtl_keras.layers.gumbel import GumbelSearch, gumbel_softmax


@register
class AdaShareBlocks(GumbelSearch, keras.layers.Layer):
    """Residual blocks shared by all tasks; per task a learnt select-or-skip policy per block.

    Sun et al., "AdaShare: Learning What To Share For Efficient Deep
    Multi-Task Learning", NeurIPS 2020, with fully connected blocks
    ``F_l(h) = relu(h + relu(h W1_l + b1_l) W2_l + b2_l)`` (width C kept).
    Task k runs ``h_l = u_kl F_l(h_{l-1}) + (1 - u_kl) h_{l-1}``.

    - Search (training): ``u_kl`` is the "select" entry of a Gumbel-softmax
      sample of the logits ``[select, skip]`` at temperature
      ``tau = temperature * temperature_decay ** epoch``, epoch = step //
      ``steps_per_epoch``. Curriculum: the first ``warmup_epochs`` run every
      block, then at the c-th epoch of policy learning only the last c blocks
      are learnt, the earlier ones selected. Regularisers (``add_loss``), with
      ``a_kl`` = softmax(logits)[select] over the learnt blocks:
      sparsity ``sparsity_weight * sum_kl log a_kl`` (favours skipping) and
      sharing ``sharing_weight * sum_{k1<k2} sum_l (L - l) / L |a_k1l - a_k2l|``
      (l = 1..L: the lower blocks are pushed hardest to be shared).
    - Search (inference): the most likely policy, hard.
    - ``freeze()``: fixes the most likely policy ([T, L] of 0/1, kept in the
      config). A frozen layer runs only the selected blocks, in training and
      at inference; tasks with the same selected blocks so far share the
      computation, and an export of one task computes only that task's blocks.

    Args:
        num_tasks: T (>= 2).
        num_blocks: L (>= 1).
        temperature, temperature_decay: the Gumbel-softmax schedule (paper: 5, 0.965 per epoch); > 0.
        steps_per_epoch: training calls per epoch of the schedule and curriculum.
        warmup_epochs: epochs with every block selected before the policy is learnt.
        curriculum: learn the last c blocks at the c-th epoch (else all at once).
        sparsity_weight, sharing_weight: lambda_sp and lambda_sh (>= 0).
        policy: a frozen policy [T, L] of 0/1; None while searching.
        seed: salt of the sampling.
        kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer: as ``keras.layers.Dense``, for every block.

    Call arguments:
        inputs: ``[B, C]``, read by every task.
        training: sample the policy (searching) or not.

    Returns:
        A list of T tensors ``[B, C]``.

    Example:
    >>> blocks = AdaShareBlocks(num_tasks=2, num_blocks=3)
    >>> [tuple(h.shape) for h in blocks(tf.ones([4, 5]), training=True)]
    [(4, 5), (4, 5)]
    >>> blocks.freeze()
    [[1, 1, 1], [1, 1, 1]]
    """

    STRUCTURE = "policy"

    def __init__(
        self,
        num_tasks,
        num_blocks,
        temperature=5.0,
        temperature_decay=0.965,
        steps_per_epoch=100,
        warmup_epochs=0,
        curriculum=True,
        sparsity_weight=0.01,
        sharing_weight=0.05,
        policy=None,
        seed=0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_tasks = checks.positive_int("num_tasks", num_tasks, minimum=2)
        self.num_blocks = checks.positive_int("num_blocks", num_blocks)
        self.init_search(temperature, temperature_decay, steps_per_epoch, seed)
        self.warmup_epochs = checks.positive_int("warmup_epochs", warmup_epochs, minimum=0)
        self.curriculum = bool(curriculum)
        for name, value in (("sparsity_weight", sparsity_weight), ("sharing_weight", sharing_weight)):
            if not float(value) >= 0.0:
                raise ValueError(f"`{name}` must be >= 0; got {value!r}.")
        self.sparsity_weight, self.sharing_weight = float(sparsity_weight), float(sharing_weight)
        self.policy = None if policy is None else self._checked_policy(policy)
        self.kernel_args = conventions.resolve(
            kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer
        )

    def _checked_policy(self, policy):
        array = np.asarray(policy)
        if array.shape != (self.num_tasks, self.num_blocks) or not np.isin(array, (0, 1)).all():
            raise ValueError(
                f"`policy` must be [num_tasks, num_blocks] = [{self.num_tasks}, {self.num_blocks}] "
                f"of 0 (skip) and 1 (select); got {policy!r}."
            )
        return array.astype("int64")

    def build(self, inputs_shape):
        shape = tf.TensorShape(inputs_shape)
        if shape.rank != 2 or shape[-1] is None:
            raise ValueError(f"AdaShareBlocks `inputs` must be one tensor [B, C]; got {inputs_shape}.")
        width, blocks, args = shape[-1], self.num_blocks, self.kernel_args
        # One variable each per block: an export keeps only the blocks some task selects.
        self.blocks = [
            [
                conventions.add_kernel(self, args, f"kernel_1_{l}", (width, width), (width, width)),
                conventions.add_bias(self, args, f"bias_1_{l}", (width,)),
                conventions.add_kernel(self, args, f"kernel_2_{l}", (width, width), (width, width)),
                conventions.add_bias(self, args, f"bias_2_{l}", (width,)),
            ]
            for l in range(blocks)
        ]
        self.policy_logits = self.add_weight(
            name="policy_logits", shape=(self.num_tasks, blocks, 2), initializer="zeros"
        )
        self.add_sample_step()
        super().build(inputs_shape)

    # -- the policy ----------------------------------------------------------
    def learnt_blocks(self, epoch):
        """[L] bool: the blocks whose policy is learnt at ``epoch`` (the others are selected)."""
        epochs = epoch - self.warmup_epochs + 1
        count = tf.clip_by_value(epochs, 0, self.num_blocks) if self.curriculum else tf.where(
            epochs > 0, tf.constant(self.num_blocks, epochs.dtype), tf.constant(0, epochs.dtype)
        )
        return tf.range(self.num_blocks, dtype=epochs.dtype) >= self.num_blocks - count

    def select_probabilities(self):
        """a_kl = softmax(logits)[select], [T, L]."""
        return tf.nn.softmax(tf.convert_to_tensor(self.policy_logits), axis=-1)[..., 0]

    def most_likely(self):
        logits = np.asarray(self.policy_logits)
        learnt = np.asarray(self.learnt_blocks(self.epoch()))
        return np.where(learnt[None, :], logits[..., 0] >= logits[..., 1], True).astype("int64")

    def regularization(self, learnt):
        mask = tf.cast(learnt, tf.float32)[None, :]
        a = self.select_probabilities()
        sparsity = tf.reduce_sum(mask * tf.math.log(a))
        position = np.arange(1, self.num_blocks + 1, dtype="float32")
        weights = (self.num_blocks - position) / self.num_blocks * mask[0]
        sharing = tf.add_n([
            tf.reduce_sum(weights * tf.abs(a[i] - a[j]))
            for i in range(self.num_tasks) for j in range(i + 1, self.num_tasks)
        ])
        return self.sparsity_weight * sparsity + self.sharing_weight * sharing

    # -- running the blocks ----------------------------------------------------
    def block(self, index, h):
        kernel_1, bias_1, kernel_2, bias_2 = self.blocks[index]
        hidden = tf.nn.relu(h @ kernel_1 + bias_1)
        return tf.nn.relu(h + hidden @ kernel_2 + bias_2)

    def call(self, inputs, training=None):
        if self.frozen:
            return self.run_policy(inputs, self.policy)
        if training:
            seed, step = self.step_seed(self.seed)
            epoch = self.epoch(step)
            learnt = self.learnt_blocks(epoch)
            sample = gumbel_softmax(tf.convert_to_tensor(self.policy_logits), self.temperature_at(epoch), seed)[..., 0]
            self.add_loss(self.regularization(learnt))
            return self.run_soft(inputs, tf.where(learnt[None, :], sample, tf.ones_like(sample)))
        if tf.executing_eagerly():
            return self.run_policy(inputs, self.most_likely())
        logits = tf.convert_to_tensor(self.policy_logits)
        hard = tf.where(self.learnt_blocks(self.epoch())[None, :], logits[..., 0] >= logits[..., 1], True)
        return self.run_soft(inputs, tf.cast(hard, inputs.dtype))

    def run_soft(self, inputs, select):
        """Every block for every task, mixed by ``select`` [T, L] (a tensor)."""
        outputs = []
        for k in range(self.num_tasks):
            h = inputs
            for l in range(self.num_blocks):
                u = select[k, l]
                h = u * self.block(l, h) + (1.0 - u) * h
            outputs.append(h)
        return outputs

    def run_policy(self, inputs, policy):
        """Only the selected blocks of a known policy [T, L]; a prefix of selected blocks is computed once."""
        computed = {(): inputs}
        outputs = []
        for k in range(self.num_tasks):
            path = ()
            for l in range(self.num_blocks):
                if policy[k][l]:
                    parent, path = path, path + (l,)
                    if path not in computed:
                        computed[path] = self.block(l, computed[parent])
            outputs.append(computed[path])
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            num_tasks=self.num_tasks,
            num_blocks=self.num_blocks,
            warmup_epochs=self.warmup_epochs,
            curriculum=self.curriculum,
            sparsity_weight=self.sparsity_weight,
            sharing_weight=self.sharing_weight,
            policy=self.structure_config(),
            **self.search_config(),
            **conventions.serialize(self.kernel_args),
        )
        return config
