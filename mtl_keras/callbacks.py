"""Training diagnostics as Keras callbacks."""

import os

import numpy as np

from mtl_keras.backend import first_call_arguments, keras
from mtl_keras.layers import PLE, CGCLayer, ExpertGate
from mtl_keras.layers.balance import usage_statistics


def expert_usage(model, x):
    """Mean gate weight per gate and expert on the batch ``x``, for each gating layer.

    Args:
        model: a model holding gating layers (``ExpertGate``, ``CGCLayer``, ``PLE``).
        x: a batch of the model's inputs.

    Returns:
        {name: (matrix [gates, experts], row labels)}; names are the layer
        names (PLE levels as ``<name>/level_<i>``). Rows are named after the tasks
        when the gates follow the model's task order (as the builders make them).

    Example:
    >>> from mtl_keras import models
    >>> model = models.mmoe(keras.Input(shape=(6,)), ["ctr", "cvr"], num_experts=3, expert_units=(4,))
    >>> matrix, rows = expert_usage(model, np.ones((4, 6), "float32"))["mmoe"]
    >>> matrix.shape, rows, np.allclose(matrix.sum(axis=1), 1.0)
    ((2, 3), ['ctr', 'cvr'], True)
    """
    usage = {}
    for layer in model.layers:
        if not isinstance(layer, (ExpertGate, CGCLayer, PLE)):
            continue
        args, kwargs = first_call_arguments(layer)
        # ExpertGate's gates may read their own gate_inputs (a FeatureSpec's task features).
        gate_inputs = kwargs.get("gate_inputs") if isinstance(layer, ExpertGate) else None
        if gate_inputs is None:
            gates = layer.gate_weights(keras.Model(model.input, args[0])(x))
        else:
            layer_inputs, gate_values = keras.Model(model.input, [args[0], gate_inputs])(x)
            gates = layer.gate_weights(layer_inputs, gate_values)
        levels = gates if isinstance(gates, list) else [gates]
        for index, level_gates in enumerate(levels):
            matrix = np.asarray(level_gates).mean(axis=0)
            name = f"{layer.name}/level_{index}" if isinstance(layer, PLE) else layer.name
            usage[name] = (matrix, _row_labels(model, matrix.shape[0]))
    return usage


def _row_labels(model, rows):
    tasks = list(model.task_names)
    if rows == len(tasks):
        return tasks
    if rows == len(tasks) + 1:
        return tasks + ["shared"]
    return [f"gate_{i}" for i in range(rows)]


class ExpertUsage(keras.callbacks.Callback):
    """Records, each ``every`` epochs, the mean gate weight per task and expert.

    ``history`` maps each gating layer's name to a list of (epoch, matrix
    [gates, experts]). Each measurement also goes into the epoch's logs (so
    History and TensorBoard have it), per gate, from the gate's mean weights:
    ``expert_usage/<layer>/<gate>/entropy`` (of the mean distribution, nats),
    ``.../max_share`` (the most used expert's share) and ``.../experts_used``
    (experts above 1 %; ``mtl_keras.layers.balance.usage_statistics``): a gate
    with one expert used has collapsed. With ``directory``, also writes a
    heatmap PNG per layer and epoch, rows labelled with those statistics
    (needs matplotlib: ``pip install mtl_keras[plots]``).

    Args:
        x: a batch of model inputs to measure the gates on.
        every: epochs between measurements.
        directory: where to write ``<layer>_epoch<NNN>.png``; None for no files.

    Example:
    >>> from mtl_keras import models
    >>> model = models.mmoe(keras.Input(shape=(6,)), ["ctr", "cvr"], num_experts=3, expert_units=(4,))
    >>> model.compile(optimizer="adam", loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"})
    >>> x, y = np.ones((8, 6), "float32"), {"ctr": np.ones((8, 1)), "cvr": np.zeros((8, 1))}
    >>> usage = ExpertUsage(x[:4])
    >>> _ = model.fit(x, y, epochs=2, verbose=0, callbacks=[usage])
    >>> [(epoch, matrix.shape) for epoch, matrix in usage.history["mmoe"]]
    [(0, (2, 3)), (1, (2, 3))]
    >>> usage.statistics["expert_usage/mmoe/ctr/experts_used"]
    3
    """

    def __init__(self, x, every=1, directory=None):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"`every` must be an integer >= 1; got {every!r}.")
        self.x = x
        self.every = int(every)
        self.directory = directory
        self.history = {}
        self.statistics = {}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        for name, (matrix, labels) in expert_usage(self.model, self.x).items():
            self.history.setdefault(name, []).append((epoch, matrix))
            for label, row in zip(labels, matrix):
                for key, value in usage_statistics(row).items():
                    self.statistics[f"expert_usage/{name}/{label}/{key}"] = value
            if self.directory:
                safe = name.replace("/", "_")
                path = os.path.join(self.directory, f"{safe}_epoch{epoch + 1:03d}.png")
                write_heatmap(matrix, labels, f"{name}, epoch {epoch + 1}", path)
        if logs is not None:
            logs.update(self.statistics)


class EpochEnd(keras.callbacks.Callback):
    """Tells a task weighting where epochs end (DWA); MultiTaskModel.fit adds it itself.

    Args:
        weighting: the built task weighting whose ``on_epoch_end`` is called.

    Example:
    >>> from mtl_keras.weighting import DynamicWeightAverage
    >>> dwa = DynamicWeightAverage()
    >>> dwa.build(["ctr", "cvr"])
    >>> EpochEnd(dwa).on_epoch_end(0)  # what fit calls after each epoch
    """

    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_end(self, epoch, logs=None):
        self.weighting.on_epoch_end()


class NonFiniteLoss(keras.callbacks.Callback):
    """Stops ``fit`` at a NaN or Inf task loss, naming the task and the step.

    MultiTaskModel.fit adds it unless ``compile(skip_nonfinite_steps=True)``:
    this class checks at each epoch end (ParameterServerStrategy allows no
    batch hooks), ``NonFiniteBatchLoss`` after every execution of the train
    function (one step, or ``steps_per_execution``). The train step records
    the first step whose loss was not finite, so the error names that step
    whichever check sees it.

    Args:
        task_names: the tasks whose ``<task>_loss`` logs are checked.
        step: the training step counter (a variable), named in the error when
            ``first_step`` is not given.
        first_step: optional [T] int variable the train step sets, per task,
            to the first training step (counted from 1) whose loss was NaN or
            Inf; -1 until then, and reset to -1 when training begins.

    Raises:
        FloatingPointError: at the first NaN or Inf task loss.

    Example:
    >>> check = NonFiniteLoss(["ctr", "cvr"], step=tf.Variable(9), first_step=tf.Variable([-1, 7], dtype=tf.int64))
    >>> check.on_epoch_end(0, {"ctr_loss": 0.3, "cvr_loss": 0.2})  # finite: nothing happens
    >>> check.on_epoch_end(1, {"ctr_loss": float("nan"), "cvr_loss": float("nan")})
    Traceback (most recent call last):
    ...
    FloatingPointError: The loss of task 'cvr' is nan at training step 7 (epoch 2). ...
    """

    def __init__(self, task_names, step, first_step=None):
        super().__init__()
        self.task_names = list(task_names)
        self.step = step
        self.first_step = first_step
        self.epoch = 0

    def on_train_begin(self, logs=None):
        if self.first_step is not None:
            self.first_step.assign(-np.ones(len(self.task_names), np.int64))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epoch = epoch
        self.check(logs, f"epoch {epoch + 1}")

    def check(self, logs, where):
        values = {task: (logs or {}).get(f"{task}_loss") for task in self.task_names}
        bad = [t for t, v in values.items() if v is not None and not np.all(np.isfinite(np.asarray(v, np.float64)))]
        if not bad:
            return
        task, step = bad[0], int(np.asarray(self.step))
        if self.first_step is not None:
            # Once one loss is NaN the weights are, and every loss follows: name the first.
            steps = dict(zip(self.task_names, np.asarray(self.first_step).tolist()))
            seen = [t for t in self.task_names if steps[t] >= 0]
            if seen:
                task = min(seen, key=steps.get)
                step = steps[task]
        raise FloatingPointError(
            f"The loss of task {task!r} is {float(np.asarray(values[task]))} at training step {step} "
            f"({where}). Check its labels and inputs, lower the learning "
            "rate, or compile with skip_nonfinite_steps=True to skip such steps."
        )


class NonFiniteBatchLoss(NonFiniteLoss):
    __doc__ = NonFiniteLoss.__doc__

    # The first non-finite step is recorded by the step itself: checking every N steps names it.
    batch_hooks_per_execution = True

    def on_train_batch_end(self, batch, logs=None):
        self.check(logs, f"epoch {self.epoch + 1}")


def write_heatmap(matrix, row_labels, title, path):
    """A PNG heatmap of a [gates, experts] matrix, each cell annotated.

    Each row is labelled with its usage statistics (entropy H, the largest
    share, experts above 1 %).

    Args:
        matrix: the gate weights [gates, experts].
        row_labels: one label per gate.
        title: the figure's title.
        path: the PNG file to write.

    Example:
    >>> write_heatmap(np.array([[0.7, 0.3], [0.2, 0.8]]), ["ctr", "cvr"], "gates", "gates.png")
    >>> os.path.getsize("gates.png") > 0
    True
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("ExpertUsage heatmaps need matplotlib: pip install 'mtl_keras[plots]'") from error
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    rows, cols = matrix.shape
    figure, axes = plt.subplots(figsize=(1.0 + 0.6 * cols, 1.0 + 0.5 * rows))
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-6))
    axes.set_xticks(range(cols), [f"e{i}" for i in range(cols)])
    stats = [usage_statistics(row) for row in matrix]
    axes.set_yticks(range(rows), [
        f"{label} (H={st['entropy']:.2f}, max={st['max_share']:.2f}, used={st['experts_used']})"
        for label, st in zip(row_labels, stats)
    ])
    for r in range(rows):
        for c in range(cols):
            axes.text(c, r, f"{matrix[r, c]:.2f}", ha="center", va="center", color="w", fontsize=7)
    axes.set_title(title)
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
