"""PNG plots of a multi-task training run (matplotlib, Agg backend).

- ``expert_usage``: one heatmap per gating layer (MMoE/OMoE gates, each PLE/CGC
  level): the mean gate weight of each task (row) on each expert (column).
- ``task_weights``: the ``<task>_weight`` logs over training.
- ``gradient_cosine``: the ``grad_cosine/<a>__<b>`` logs over training (logged
  when a projection is set or with ``compile(log_gradient_cosine=True)``).
- ``validation_curves``: per task, the validation loss (and any other
  ``val_<task>_<metric>``) per epoch, one line per run.

Training curves come from a ``keras.callbacks.History`` (``history.history``,
one point an epoch) or, finer, from ``BatchLog`` (one point every ``every``
training steps: the epoch's running means so far, as Keras reports them). Every function returns the data it drew, so tests and
notebooks can check it. Needs matplotlib: ``pip install 'mtl_keras[plots]'``.

Example:
>>> from mtl_keras import models
>>> model = models.mmoe(keras.Input(shape=(6,)), ["ctr", "cvr"], num_experts=2, expert_units=(4,))
>>> model.compile(optimizer="adam", loss={"ctr": "binary_crossentropy", "cvr": "binary_crossentropy"},
...               task_weighting="uncertainty",
...               gradient_projection="pcgrad")
>>> x = np.random.default_rng(0).random((32, 6), dtype="float32")
>>> y = {"ctr": np.ones((32, 1)), "cvr": np.zeros((32, 1))}
>>> log = BatchLog(every=2)
>>> history = model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0, callbacks=[log])
>>> sorted(task_weights(log, "out/task_weights.png"))
['ctr', 'cvr']
>>> sorted(gradient_cosine(history, "out/gradient_cosine.png"))
['ctr__cvr']
>>> sorted(validation_curves({"pcgrad": history}, "out/validation.png"))
['ctr', 'cvr']
"""

import os

import numpy as np

from mtl_keras.backend import keras


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("mtl_keras.plots needs matplotlib: pip install 'mtl_keras[plots]'") from error
    return plt


class BatchLog(keras.callbacks.Callback):
    """Records the training logs every ``every`` steps, for finer curves than an epoch's.

    ``series[key]`` is a list of (step, value), ``step`` counting from 1 across
    epochs.

    Args:
        every: steps between records.
        keys: the log keys to keep (None: every key). Each value is what Keras
            reports after that step: for a MultiTaskModel's losses, task weights and
            gradient cosines, the running mean over the epoch so far (so a curve can
            jump where an epoch starts and the mean restarts).

    Example:
    >>> log = BatchLog(every=2, keys=["loss"])
    >>> for batch, loss in enumerate([0.9, 0.7, 0.6, 0.5]):
    ...     log.on_train_batch_end(batch, {"loss": loss, "ctr_loss": loss / 2})
    >>> log.series
    {'loss': [(2, 0.7), (4, 0.5)]}
    """

    def __init__(self, every=10, keys=None):
        super().__init__()
        if int(every) < 1:
            raise ValueError(f"`every` must be an integer >= 1; got {every!r}.")
        self.every = int(every)
        self.keys = None if keys is None else set(keys)
        self.series = {}
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self.every:
            return
        for key, value in (logs or {}).items():
            if self.keys is None or key in self.keys:
                self.series.setdefault(key, []).append((self._step, float(np.asarray(value))))


def _curves(history, select):
    """{key: (x [n], y [n])} for the keys ``select`` keeps, from a History dict (epochs 1..n)
    or a BatchLog series (steps)."""
    history = _as_dict(history)
    curves = {}
    for key, values in history.items():
        if not select(key) or not len(values):
            continue
        if isinstance(values[0], (tuple, list)):
            x, y = (np.array(v, np.float64) for v in zip(*values))
        else:
            y = np.asarray(values, np.float64).ravel()
            x = np.arange(1, len(y) + 1, dtype=np.float64)
        curves[key] = (x, y)
    return curves


def _x_label(history):
    first = next(iter(history.values()), [])
    return "training step" if len(first) and isinstance(first[0], (tuple, list)) else "epoch"


def _line_plot(curves, path, title, y_label, x_label, label=lambda key: key, reference=None):
    plt = _pyplot()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    for key, (x, y) in sorted(curves.items()):
        axes.plot(x, y, marker="." if len(x) < 30 else None, label=label(key))
    if reference is not None:
        axes.axhline(reference, color="grey", linewidth=0.8, linestyle="--")
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def task_weights(history, path):
    """Plots every ``<task>_weight`` log (validation ones left out) against the epoch or step.

    Args:
        history: a ``keras.callbacks.History``, its ``history`` dict, or a ``BatchLog``.
        path: the PNG file to write.

    Returns:
        {task: (x, weight)}.

    Raises:
        ValueError: when the history has no weight.

    Example:
    >>> curves = task_weights({"ctr_weight": [1.0, 1.2], "cvr_weight": [1.0, 0.8], "loss": [0.5, 0.4]}, "weights.png")
    >>> {task: weights.tolist() for task, (epochs, weights) in curves.items()}
    {'ctr': [1.0, 1.2], 'cvr': [1.0, 0.8]}
    """
    curves = _curves(history, lambda k: k.endswith("_weight") and not k.startswith("val_"))
    if not curves:
        raise ValueError("the history has no `<task>_weight` log; was the model a MultiTaskModel?")
    _line_plot(curves, path, "Task weights", "weight on the task loss", _x_label(_as_dict(history)),
               label=lambda k: k[: -len("_weight")], reference=1.0)
    return {k[: -len("_weight")]: v for k, v in curves.items()}


def gradient_cosine(history, path):
    """Plots every ``grad_cosine/<a>__<b>`` log against the epoch or step.

    Each is the cosine between two tasks' gradients of the shared variables
    (before any projection).

    Args:
        history: a ``keras.callbacks.History``, its ``history`` dict, or a ``BatchLog``.
        path: the PNG file to write.

    Returns:
        {"a__b": (x, cosine)}.

    Raises:
        ValueError: when none was logged (compile with a gradient projection or
            ``log_gradient_cosine=True``).

    Example:
    >>> curves = gradient_cosine({"grad_cosine/ctr__cvr": [(10, 0.2), (20, -0.1)]}, "cosine.png")
    >>> steps, cosines = curves["ctr__cvr"]
    >>> steps.tolist(), cosines.tolist()
    ([10.0, 20.0], [0.2, -0.1])
    """
    curves = _curves(history, lambda k: k.startswith("grad_cosine/"))
    if not curves:
        raise ValueError("the history has no `grad_cosine/...` log; compile with a gradient_projection "
                         "or log_gradient_cosine=True")
    _line_plot(curves, path, "Cosine between task gradients (shared variables)", "cosine",
               _x_label(_as_dict(history)), label=lambda k: k.split("/", 1)[1].replace("__", " vs "),
               reference=0.0)
    return {k.split("/", 1)[1]: v for k, v in curves.items()}


def validation_curves(histories, path, tasks=None):
    """Per task, ``val_<task>_<metric>`` per epoch, one line per run.

    Args:
        histories: {run name: History or its ``history`` dict}.
        path: the PNG.
        tasks: task names (default: every task with a ``val_<task>_loss``).

    Returns {task: {metric: {run: (epochs, values)}}}.

    Example:
    >>> runs = {"equal": {"val_ctr_loss": [0.6, 0.5], "val_ctr_auc": [0.7, 0.8]},
    ...         "pcgrad": {"val_ctr_loss": [0.55, 0.45], "val_ctr_auc": [0.72, 0.81]}}
    >>> data = validation_curves(runs, "validation.png")
    >>> sorted(data["ctr"]), sorted(data["ctr"]["auc"])
    (['auc', 'loss'], ['equal', 'pcgrad'])
    """
    plt = _pyplot()
    histories = {run: _as_dict(h) for run, h in histories.items()}
    if tasks is None:
        tasks = sorted({k[4:-5] for h in histories.values() for k in h
                        if k.startswith("val_") and k.endswith("_loss") and k != "val_loss"})
    if not tasks:
        raise ValueError("no `val_<task>_loss` in the histories; fit with validation_data")
    data = {}
    for task in tasks:
        prefix = f"val_{task}_"
        for run, history in histories.items():
            for key, (x, y) in _curves(history, lambda k: k.startswith(prefix) and k != f"{prefix}weight").items():
                data.setdefault(task, {}).setdefault(key[len(prefix):], {})[run] = (x, y)
    metrics = sorted({m for by_metric in data.values() for m in by_metric}, key=lambda m: (m != "loss", m))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure, grid = plt.subplots(len(metrics), len(tasks), figsize=(3.6 * len(tasks), 2.8 * len(metrics)),
                                squeeze=False)
    for row, metric in enumerate(metrics):
        for column, task in enumerate(tasks):
            axes = grid[row][column]
            for run, (x, y) in sorted(data.get(task, {}).get(metric, {}).items()):
                axes.plot(x, y, marker=".", label=run)
            axes.set_title(f"{task}: validation {metric}", fontsize=9)
            axes.set_xlabel("epoch")
            axes.grid(alpha=0.3)
            axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return data


def expert_usage(usage, directory, prefix="expert_usage"):
    """One heatmap PNG per gating layer.

    Args:
        usage: ``mtl_keras.callbacks.expert_usage(model, x)`` ({layer: (matrix, row labels)}),
            or an ``ExpertUsage`` callback (its last record per layer, rows named by
            ``expert_usage``'s rule).
        directory: where to write ``<prefix>_<layer>.png``.
        prefix: the file names' prefix.

    Returns:
        {path: matrix [gates, experts]}; each row sums to 1 (a softmax gate).

    Example:
    >>> written = expert_usage({"mmoe": (np.array([[0.7, 0.3], [0.4, 0.6]]), ["ctr", "cvr"])}, "plots")
    >>> [os.path.basename(path) for path in written]
    ['expert_usage_mmoe.png']
    """
    from mtl_keras.callbacks import ExpertUsage, _row_labels, write_heatmap

    if isinstance(usage, ExpertUsage):
        usage = {name: (records[-1][1], _row_labels(usage.model, records[-1][1].shape[0]))
                 for name, records in usage.history.items() if records}
    if not usage:
        raise ValueError("no gating layer to plot (MMoE, OMoE, PLE and CGC have gates)")
    written = {}
    for name, (matrix, labels) in usage.items():
        path = os.path.join(directory, f"{prefix}_{name.replace('/', '_')}.png")
        write_heatmap(np.asarray(matrix), labels, f"{name}: mean gate weight", path)
        written[path] = np.asarray(matrix)
    return written


def _as_dict(history):
    for attribute in ("history", "series"):  # a History, a BatchLog (empty ones too)
        if hasattr(history, attribute):
            return getattr(history, attribute)
    return history
