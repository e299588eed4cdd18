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
  (``representation_gram.mixing_gram``), which spares T copies of the [B, E, H] gradient
  (docs/benchmarks.md, "Why the defaults").

A third, "plain", takes one backward of the weighted loss when nothing needs
per-task gradients. Each mode is an object with one method,
``gradients(tape, step, variables, scale) -> (gradients in variables order,
the task Gram matrix or None)``; ``scale`` is the loss scale of mixed
precision (None otherwise): every backward pass starts from it, and the
gradients returned are divided by it again, so projections and the Gram
matrix see the true float32 gradients.
"""

from mtl_keras.backend import tf
from mtl_keras.core.gram import gram_matrix
from mtl_keras.core.task_gradients import (
    ZERO,
    flatten,
    num_replicas,
    replica_sum,
    sources,
    task_gradient_matrix,
    unflatten,
    unscaled_gradient,
)
from mtl_keras.training.representation_gram import (
    gram_of_gradients,
    mixing_gram,
    recorded_tensors,
    representation_gradients,
)
from mtl_keras.training.sharing import read_only_through, representation_layers


# Which projection_mode serves what a projection ``needs`` (projection.base), and why not the other.
MODES = {
    "gram": ("exact", "fast"),
    "gradients": ("exact",),
    "representation": ("fast",),
    "sub_batches": ("exact",),
}
WHY_NOT = {
    "gradients": "it needs the per-task gradients of the shared parameters, which fast mode never forms",
    "representation": "it combines the task gradients at the shared representation",
    "sub_batches": "it needs the per-task gradients of the shared parameters on each sub-batch",
}


def get(per_task, projection_mode, model, projection, method):
    """The mode a compiled model trains with."""
    if not per_task:
        return Plain()
    needs = getattr(projection, "needs", "gram")
    if projection_mode not in MODES[needs]:
        raise ValueError(
            f"`gradient_projection` {type(projection).__name__} runs with projection_mode="
            f"{MODES[needs][0]!r} only ({WHY_NOT[needs]}); got projection_mode={projection_mode!r}."
        )
    if needs == "representation":
        return AtRepresentation(model.shared_variables, projection, representation_layers(model))
    if needs == "sub_batches":
        return SubBatches(model.shared_variables, projection)
    if projection_mode == "fast":
        return Fast(model.shared_variables, projection, representation_layers(model))
    layers = representation_layers(model, required=False) if method == "jacobian" else []
    return Exact(model.shared_variables, projection, method, layers)


class Plain:
    """One backward pass of the weighted loss."""

    per_task = persistent = False

    def gradients(self, tape, step, variables, scale):
        # Heads without a loss get None, and the optimizers leave them out.
        return unscaled_gradient(tape, step.loss, variables, scale, unconnected=None), None


class _Projected:
    # Per-task gradients (and the Gram matrix the logs take cosines from) need the tape twice.
    per_task = persistent = True

    def __init__(self, shared, projection):
        self.shared = list(shared)
        self.projection = projection

    def others(self, tape, step, variables, scale):
        shared_ids = {id(v) for v in self.shared}
        others = [v for v in variables if id(v) not in shared_ids]
        return dict(zip(map(id, others), unscaled_gradient(tape, step.loss, others, scale, unconnected=None)))

    def in_order(self, tape, step, variables, gradients, combined):
        """Every gradient in ``variables`` order: the shared ones from ``combined`` [P], the
        all-replica combination (each replica applies 1/R of it, which the optimizer's sum
        over replicas restores), plus the regularization's."""
        extra = tape.gradient(step.extra, sources(self.shared), unconnected_gradients=ZERO)
        combined = combined / num_replicas() + tf.cast(flatten(extra), tf.float32)
        gradients.update(zip(map(id, self.shared), unflatten(combined, self.shared)))
        return [gradients[id(v)] for v in variables]


class Exact(_Projected):
    """Per-task gradients of the shared variables, combined by the projection.

    With ``task_gradient_method="jacobian"`` the T backward passes are one
    vectorized pass (pfor). From the losses it takes every task's tower for
    every task (T^2 towers' passes); where ``sharing.read_only_through`` proves
    that the shared variables reach the losses only through the recorded
    representation R, the pass is vectorized from R instead, over the tasks'
    gradients there (each tower once, as the loop takes them).
    """

    def __init__(self, shared, projection, method, representation_layers=()):
        super().__init__(shared, projection)
        self.method = method
        self.layers = list(representation_layers)
        self.vectorized_from_representation = None  # set at each trace, for the tests and benchmarks

    def gradients(self, tape, step, variables, scale):
        representations = self.representations()
        gradients = self.others(tape, step, variables, scale)
        matrix = replica_sum(self.task_gradients(tape, step, representations, scale))
        gram = gram_matrix(matrix)
        if self.projection is not None:
            combined = self.projection.combine_with_gram(matrix, gram, step.task_losses)
        else:
            combined = tf.reduce_sum(tf.cast(matrix, tf.float32), axis=0)
        return self.in_order(tape, step, variables, gradients, combined), gram

    def representations(self):
        """R for the pass from the representation, read before any backward pass (gradient ops
        also consume the recorded outputs); None where one cannot stand for all its reads."""
        try:
            return [layer.recorded_representation for layer in self.layers] or None
        except ValueError:  # an output also read around its recorded mixes
            return None

    def task_gradients(self, tape, step, representations, scale):
        if self.method == "loop":
            return task_gradient_matrix(tape, step.weighted, self.shared, "loop", scale)
        self.vectorized_from_representation = False
        # read_only_through first: where it fails (PLE's nested levels) nothing below is built.
        if representations and scale is None and read_only_through(step.weighted, recorded_tensors(representations)):
            tensors, per_task = representation_gradients(tape, step.weighted, representations)
            kept = [r for r in range(len(tensors)) if any(task[r] is not None for task in per_task)]
            upstream = [tf.stack([tf.zeros_like(tensors[r]) if task[r] is None else task[r] for task in per_task])
                        for r in kept]
            through = [tensors[r] for r in kept]
            reached = kept and all(g is not None for g in unscaled_gradient(
                tape, through, self.shared, output_gradients=[u[0] for u in upstream], unconnected=None))
            if reached:
                self.vectorized_from_representation = True
                # Dense rows (an embedding's IndexedSlices included), as tape.jacobian gives.
                rows = tf.vectorized_map(lambda grads: [tf.convert_to_tensor(g) for g in unscaled_gradient(
                    tape, through, self.shared, output_gradients=list(grads))], upstream)
                return tf.concat([tf.reshape(row, [len(per_task), -1]) for row in rows], axis=1)
        return task_gradient_matrix(tape, step.weighted_vector, self.shared, "jacobian", scale)


class SubBatches(_Projected):
    """Per-task gradients of the shared variables on each sub-batch the projection draws
    (``step.part_losses``), combined by ``projection.combine_sub_batches``; the logs' Gram
    matrix is that of their mean."""

    def gradients(self, tape, step, variables, scale):
        gradients = self.others(tape, step, variables, scale)
        parts = tf.stack([
            replica_sum(task_gradient_matrix(tape, part, self.shared, "loop", scale)) for part in step.part_losses
        ])
        gram = gram_matrix(tf.reduce_mean(parts, axis=0))
        combined = self.projection.combine_sub_batches(parts, step.task_losses)
        return self.in_order(tape, step, variables, gradients, combined), gram


class Fast(_Projected):
    """The task Gram matrix from gradients with respect to the shared representation.

    The backward pass of sum_k a_k L_k into the shared variables starts at the
    representation, from sum_k a_k dL_k/dR (the gradients the Gram matrix was
    formed from), where ``sharing.read_only_through`` proves at trace time that
    this is the same pass: no variable read on both sides of R, no R above
    another. The towers' backward pass is then not taken a second time. Else
    (PLE's nested levels, a variable read around R, mixed precision's loss scale,
    eager steps) it starts at the losses.
    """

    def __init__(self, shared, projection, representation_layers):
        super().__init__(shared, projection)
        self.layers = representation_layers
        self.starts_at_representation = None  # set at each trace, for the tests and benchmarks

    def gradients(self, tape, step, variables, scale):
        # Read before any backward pass: gradient ops also consume the recorded outputs.
        representations = [layer.recorded_representation for layer in self.layers]
        gradients = self.others(tape, step, variables, scale)
        tensors, per_task = representation_gradients(tape, step.weighted, representations, scale)
        gram = replica_sum(gram_of_gradients(representations, per_task))
        if self.projection is not None:
            coefficients = tf.stop_gradient(self.projection.coefficients_in_one_block(gram, step.task_losses))
        else:
            coefficients = tf.ones([len(step.weighted)])
        self.starts_at_representation = scale is None and read_only_through(step.weighted, tensors)
        if self.starts_at_representation:
            shared_gradients = self.from_representation(tape, step, tensors, per_task, coefficients)
        else:
            shared_gradients = from_losses(tape, step, self.shared, coefficients, scale)
        gradients.update(zip(map(id, self.shared), shared_gradients))
        return [gradients[id(v)] for v in variables], gram

    def from_representation(self, tape, step, tensors, per_task, coefficients):
        """The shared variables' gradients of sum_k a_k L_k + extra, the tasks' part from R:
        sum_k a_k dL_k/dR. Shared variables no R reaches get the pass from the losses."""
        kept, upstream = [], []
        for r, tensor in enumerate(tensors):
            terms = [coefficients[k] * tf.cast(task[r], tf.float32) for k, task in enumerate(per_task)
                     if task[r] is not None]
            if terms:
                kept.append(tensor)
                upstream.append(tf.cast(tf.add_n(terms), tensor.dtype))
        return from_tensors(tape, step, self.shared, kept, upstream, coefficients)


class AtRepresentation(_Projected):
    """Each task's gradient at the shared representation, combined element-wise by the
    projection (``combine_representation``), then one backward pass into the shared
    variables; shared variables no representation depends on get the plain sum.

    Where ``sharing.read_only_through`` cannot prove that the shared variables reach the losses
    only through the representations R (an MMoE's gates reading a shared bottom or the
    embeddings; PLE's nested levels), the paths around them keep the plain sum of the task
    gradients: the pass starts at the losses (every path, the plain sum) and adds at each R the
    combination's change there, combined - sum_t dL_t/dR, in the same backward pass. Nested
    representations thus each change the gradient by their own masks of the unmasked task
    gradients (after a combination the tasks' parts are no longer apart).
    """

    def __init__(self, shared, projection, representation_layers):
        super().__init__(shared, projection)
        self.layers = representation_layers
        self.only_through_representation = None  # set at each trace, for the tests

    def gradients(self, tape, step, variables, scale):
        outputs = [layer.recorded_output for layer in self.layers]
        # Read before any backward pass: gradient ops also consume the recorded outputs.
        mixings = [layer.recorded_mixing_only for layer in self.layers]
        gradients = self.others(tape, step, variables, scale)
        per_task = [unscaled_gradient(tape, loss, outputs, scale) for loss in step.weighted]
        combined = [
            self.projection.combine_representation(tf.stack([task[r] for task in per_task]), output)
            for r, output in enumerate(outputs)
        ]
        self.only_through_representation = read_only_through(step.weighted, outputs)
        if self.only_through_representation:
            shared = from_tensors(tape, step, self.shared, outputs, combined, tf.ones([len(step.weighted)]), scale)
        else:
            changes = [c - tf.add_n([task[r] for task in per_task]) for r, c in enumerate(combined)]
            ones = [tf.ones_like(step.weighted_vector), tf.ones_like(step.extra)]
            shared = unscaled_gradient(tape, [step.weighted_vector, step.extra] + outputs, self.shared, scale,
                                       output_gradients=ones + changes)
        gradients.update(zip(map(id, self.shared), shared))
        # The logs' Gram matrix from the mixes' gradients where an output is read only through
        # them (mixing_gram): a [T, B E H] product cost more than the rest of the step.
        parts = [
            mixing_gram(mixing, [unscaled_gradient(tape, loss, mixing.mixes, scale, unconnected=None)
                                 for loss in step.weighted])
            for mixing in mixings if mixing is not None
        ]
        plain = [r for r, mixing in enumerate(mixings) if mixing is None]
        if plain:
            parts.append(gram_matrix(tf.stack([flatten([task[r] for r in plain]) for task in per_task])))
        gram = replica_sum(tf.add_n(parts))
        return [gradients[id(v)] for v in variables], gram


def from_losses(tape, step, variables, coefficients, scale=None):
    """The gradients of sum_k a_k L_k + extra (a: ``coefficients``) with respect to ``variables``."""
    return unscaled_gradient(tape, [step.weighted_vector, step.extra], variables, scale,
                             output_gradients=[coefficients, tf.ones_like(step.extra)])


def from_tensors(tape, step, variables, tensors, upstream, coefficients, scale=None):
    """The gradients of sum_k a_k L_k + extra when the losses reach ``variables`` only through
    ``tensors``, from the tasks' part there (``upstream``): one pass from the tensors, the towers'
    not taken again. Variables no tensor reaches get the pass from the losses."""
    through = unscaled_gradient(tape, tensors, variables, scale, output_gradients=upstream, unconnected=None) \
        if tensors else [None] * len(variables)
    apart = [v for v, via in zip(variables, through) if via is None]
    plain = dict(zip(map(id, apart), from_losses(tape, step, apart, coefficients, scale))) if apart else {}
    extra = unscaled_gradient(tape, step.extra, variables, scale)
    return [plain[id(v)] if via is None else tf.convert_to_tensor(via) + tf.cast(reg, via.dtype)
            for v, via, reg in zip(variables, through, extra)]
