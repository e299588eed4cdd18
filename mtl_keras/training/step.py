"""One multi-task training step, shared by MultiTaskModel and ``mtl_keras.tfrs``.

losses -> weighting -> gradients (plain, exact or fast projection) ->
optimizer groups -> logs. A ``Trainer`` is made at compile time from the
resolved pieces; its methods run inside the traced step, and nothing in it
branches on the weighting or projection method.
"""

from mtl_keras.backend import IS_KERAS3, all_layers, is_layer_graph, keras, op_determinism_enabled, state_variable, tf
from mtl_keras.callbacks import EpochEnd, NonFiniteBatchLoss, NonFiniteLoss
from mtl_keras.core.step import TrainStep
from mtl_keras.core.task_gradients import num_replicas, replica_sum
from mtl_keras.layers.representation import SharedRepresentation
from mtl_keras.training import optimizers
from mtl_keras.training.logs import TaskTrackers
from mtl_keras.training.state import TrainingState


class Trainer:
    """The compiled training pieces of a multi-task model.

    Args:
        tasks: the trained tasks, in order.
        weighting: a built TaskWeighting; projection: a built
            GradientProjection or None; mode: a gradient mode
            (``gradient_modes.get``).
        main_optimizer: ``model.optimizer`` after Keras's compile (it may be a
            LossScaleOptimizer); groups: [(optimizer, [variables])].
        starts: [T] int64 start steps or None; auxiliary_weight: gamma.
        skip_nonfinite: skip (and count) a step with a NaN or Inf loss or
            gradient, instead of stopping ``fit``.
        metric_ids, head_units, auxiliary_tasks: what the logs track.
    """

    def __init__(self, tasks, weighting, projection, mode, main_optimizer, groups, starts=None,
                 auxiliary_weight=0.0, skip_nonfinite=False, metric_ids=None, head_units=None,
                 auxiliary_tasks=()):
        self.tasks = tuple(tasks)
        self.mode = mode
        self.main_optimizer = main_optimizer
        self.groups = optimizers.with_loss_scaling(main_optimizer, groups)
        optimizers.build(self.groups)
        self.variables = [v for _, vs in self.groups for v in vs]
        self.starts = starts
        self.auxiliary_weight = auxiliary_weight
        self.skip_nonfinite = skip_nonfinite
        self.state = TrainingState(
            weighting, projection, [o for o, _ in self.groups if o is not main_optimizer]
        )
        # Read by the non-finite-loss stop, which may run steps after the one to name; not
        # training state, so not saved.
        self.first_nonfinite_step = state_variable(
            tf.constant(-1, tf.int64, [len(self.tasks)]), "mtl_first_nonfinite_step"
        )
        self.trackers = TaskTrackers(
            self.tasks, metric_ids or {}, head_units or {t: 1 for t in self.tasks},
            cosine=mode.per_task,
            auxiliary=[t for t in self.tasks if t in auxiliary_tasks], nonfinite=skip_nonfinite,
        )

    @property
    def persistent(self):
        """Whether the step's tape must serve more than one gradient call."""
        return self.mode.persistent or self.state.weighting.needs_tape

    @property
    def sub_batches(self):
        """S, the sub-batches the projection draws from each batch (1: none)."""
        return getattr(self.state.projection, "num_sub_batches", 1)

    def assemble(self, shares, aux_shares, regularization, part_shares=None, present=None):
        """L = sum_t w_t (L_t + gamma L_t^aux) + regularization, inside the tape.

        ``shares``: each task's loss share on this replica (local sum / global
        count, so replicas add up to the global mean); ``aux_shares`` likewise
        for the auxiliary heads (0 where a task has none); ``part_shares``: the
        (shares, aux_shares) of each of ``sub_batches`` sub-batches, when there are several;
        ``present``: [T] 1 for the tasks with labelled rows in the global batch (None: all);
        the others, and the tasks not started, lose the weighting's per-task regularization.
        """
        weighting = self.state.weighting
        task_losses = tf.stop_gradient(replica_sum(tf.stack(shares)))
        weights = weighting.weights(task_losses) * self._active_tasks()
        weighted = self._weighted(weights, shares, aux_shares)
        # Stacked inside the tape: a target built after it closes has no gradient.
        weighted_vector = tf.stack(weighted)
        extra = (regularization + weighting.regularization() - self._absent_terms(present)) / num_replicas()
        loss = tf.reduce_sum(weighted_vector) + extra
        aux_losses = tf.stop_gradient(replica_sum(tf.stack(aux_shares)))
        part_losses = None if part_shares is None else [
            self._weighted(weights, part, aux_part) for part, aux_part in part_shares
        ]
        return TrainStep(
            None, task_losses, shares, weighted, weighted_vector, extra, loss, weights, aux_losses, part_losses
        )

    def _absent_terms(self, present):
        """The weighting's per-task regularization terms of the tasks not started or without
        labelled rows, which the step takes out of ``regularization()``: a task's own term (a
        log-variance's) moves nothing before it starts or without labels."""
        terms = self.state.weighting.task_regularization()
        if terms is None:
            return tf.constant(0.0)
        present = tf.ones_like(terms) if present is None else present
        return tf.reduce_sum(terms * (1.0 - present * self._active_tasks()))

    def _weighted(self, weights, shares, aux_shares):
        """w_t (L_t + gamma L_t^aux) for each task."""
        return [weights[i] * (share + self.auxiliary_weight * aux_shares[i]) for i, share in enumerate(shares)]

    def apply(self, tape, step):
        """Gradients, the weighting's update, the optimizers' step; returns (gram, finite)."""
        state = self.state
        step = step._replace(tape=tape)
        gradients, gram = self.mode.gradients(tape, step, self.variables, optimizers.loss_scale(self.main_optimizer))
        state.weighting.update(step)
        finite = None
        if self.skip_nonfinite:
            finite = tf.reduce_all(tf.math.is_finite(step.task_losses)) & optimizers.all_finite(gradients)
            state.nonfinite_steps.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
        else:
            first = tf.convert_to_tensor(self.first_nonfinite_step)
            unseen = tf.logical_not(tf.math.is_finite(step.task_losses)) & (first < 0)
            self.first_nonfinite_step.assign(tf.where(unseen, tf.convert_to_tensor(state.step) + 1, first))
        optimizers.apply(self.groups, gradients, self.variables, finite)
        state.step.assign_add(1)
        return gram, finite

    def log(self, step, y=None, y_pred=None, sample_weight=None, gram=None, finite=None, training=True):
        """The step's logs: loss, <task>_loss, <task>_weight, metrics, cosines; an evaluation
        step (``training=False``) logs ``trackers.evaluation()`` only."""
        total = tf.reduce_sum(step.weights * (step.task_losses + self.auxiliary_weight * step.aux_losses))
        total += step.extra * num_replicas()
        return self.trackers.update(
            total, step.task_losses, step.weights, y or {}, y_pred, sample_weight, gram,
            step.aux_losses, finite, self.state.nonfinite_steps, training,
        )

    def callbacks(self, user_callbacks, strategy):
        """``fit``'s callbacks: epoch-end state moves before the user's checkpoints save it;
        group rates follow after the user's learning-rate callbacks; non-finite losses stop.
        ``strategy``: the model's (``fit`` runs outside its scope)."""
        after = [optimizers.FollowLearningRate(self.main_optimizer, self.state.optimizers)]
        if not self.skip_nonfinite:
            # ParameterServerStrategy allows no batch-level hooks.
            coordinated = getattr(strategy, "_should_use_with_coordinator", False)
            check = NonFiniteLoss if coordinated else NonFiniteBatchLoss
            after.append(check(self.tasks, self.state.step, self.first_nonfinite_step))
        return [EpochEnd(self.state.weighting)] + list(user_callbacks or []) + after

    def _active_tasks(self):
        if self.starts is None:
            return tf.constant(1.0)
        return tf.cast(tf.convert_to_tensor(self.state.step) >= self.starts, tf.float32)


def resolve_jit_compile(model, requested, run_eagerly=False):
    """``compile``'s ``jit_compile`` when the user left it to us ("auto", or None under tf_keras).

    XLA when every layer of the model can be compiled, whatever the
    weighting and projection: XLA fuses the experts' elementwise work and the
    gated mixes, which the default steps and the per-task-gradient steps
    gained from (docs/benchmarks.md, "Why the defaults"). Not for a model of
    dense layers alone (a Shared-Bottom): it has nothing for XLA to fuse, and
    TensorFlow's own kernels (oneDNN's matmul with its bias and activation)
    ran its steps as fast at the large shape and faster at the small one
    (docs/benchmarks.md, "Shared-Bottom without XLA"). Never under a
    distribution strategy (Keras 3 refuses XLA there too), with
    ``run_eagerly``, or with op determinism on. Keras 3's
    own "auto" means no XLA on a CPU-only machine.
    """
    if requested not in (None, "auto"):
        return requested
    distributed = tf.distribute.has_strategy() or getattr(model, "_distribute_strategy", None) or getattr(
        model, "_distribution_strategy", None
    )
    if run_eagerly or distributed or op_determinism_enabled():
        return False
    layers = all_layers(model, include_self=True)
    if any(getattr(layer, "compute_dtype", None) == "bfloat16" for layer in layers):
        # oneDNN's bfloat16 matmuls (AVX512-BF16) beat XLA's, which has no such kernels
        # (docs/benchmarks.md, "Why the defaults").
        return False
    return all(_jit_compatible(layer) for layer in layers) and not all(map(_dense_or_pass_through, layers))


# The layers of a model with nothing for XLA to fuse: dense layers, and layers that only pass tensors on.
_DENSE = (keras.layers.Dense, keras.layers.InputLayer, keras.layers.Dropout, keras.layers.Activation,
          keras.layers.Concatenate, keras.layers.Flatten, SharedRepresentation)


def _dense_or_pass_through(layer):
    """A functional or sequential model passes tensors on between its layers (each judged on its
    own); a subclassed model's ``call`` may do work XLA would fuse."""
    return isinstance(layer, _DENSE) or (isinstance(layer, keras.Model) and is_layer_graph(layer))


def _jit_compatible(layer):
    """Keras 3 layers say so (``supports_jit``: lookups, hashing and other preprocessing
    don't); tf_keras has no flag, so its preprocessing layers count as not compatible."""
    if not getattr(layer, "supports_jit", True):
        return False
    if not IS_KERAS3 and isinstance(layer, keras.layers.experimental.preprocessing.PreprocessingLayer):
        return False
    return True


def check_strategy():
    """Refuses, at compile, the strategies Keras 3 itself cannot train under."""
    strategy = tf.distribute.get_strategy()
    unsupported = {
        tf.distribute.MultiWorkerMirroredStrategy: "tf.distribute.MultiWorkerMirroredStrategy",
        tf.distribute.experimental.ParameterServerStrategy: "tf.distribute.experimental.ParameterServerStrategy",
    }
    names = [name for kind, name in unsupported.items() if isinstance(strategy, kind)]
    if IS_KERAS3 and names:
        raise ValueError(
            f"Keras 3 does not train under {names[0]} (its own keras.Model "
            "fails the same way); run mtl_keras under tf_keras for it: set "
            "TF_USE_LEGACY_KERAS=1 before importing TensorFlow."
        )
