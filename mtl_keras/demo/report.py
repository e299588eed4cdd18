"""The demo's comparison: test AUC and log loss per model and task, the verdict per task, the plots."""

import os

import numpy as np

from mtl_keras.evaluation import auc, log_loss

TIE = 0.0005  # AUC differences below this are reported as a tie


def evaluate(runs, test, tasks):
    """[{"model", "<task> AUC", "<task> logloss" (tasks the run learns; None otherwise), "epoch"}];
    cvr on the clicked rows only (its label is unobserved elsewhere)."""
    x, y = test
    rows = []
    for run in runs:
        predicted = run.model.predict(x, batch_size=4096, verbose=0)
        row = {"model": run.name}
        for task in tasks:
            seen = ~np.isnan(y[task].ravel())
            labels = y[task].ravel()[seen]
            scores = predicted[task].ravel()[seen] if task in run.tasks else None
            row[f"{task} AUC"] = None if scores is None else auc(labels, scores)
            row[f"{task} logloss"] = None if scores is None else log_loss(labels, scores)
        row["best epoch"] = f"{run.best_epoch} of {len(run.history[run.monitor])}"
        rows.append(row)
    return rows


def table(rows):
    """A Markdown table of ``rows`` (floats to 4 decimals, None as "-")."""
    headers = list(rows[0])
    cells = [["-" if r[h] is None else f"{r[h]:.4f}" if isinstance(r[h], float) else str(r[h]) for h in headers]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = lambda values: "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule] + [line(c) for c in cells])


def verdicts(rows, tasks, counts):
    """Per task: the multi-task model (first row) against the single-task one, who wins and by how much.

    Args:
        rows: ``evaluate``'s rows, the multi-task model first.
        tasks: the tasks compared.
        counts: {task: a few words on its training labels}, printed with the verdict.

    Returns {task: {"multi_task", "single_task", "gain", "winner"}} and the printed lines.
    """
    multi, found, lines = rows[0], {}, []
    for task in tasks:
        single = next(r for r in rows[1:] if r[f"{task} AUC"] is not None)
        gain = multi[f"{task} AUC"] - single[f"{task} AUC"]
        winner = "tie" if abs(gain) < TIE else multi["model"] if gain > 0 else single["model"]
        found[task] = {"multi_task": multi[f"{task} AUC"], "single_task": single[f"{task} AUC"], "gain": gain,
                       "winner": winner}
        outcome = f"a tie ({gain:+.4f} AUC)" if winner == "tie" else f"{winner} wins by {abs(gain):.4f} AUC"
        lines.append(f"  {task} ({counts[task]}): {multi['model']} {multi[f'{task} AUC']:.4f} vs "
                     f"{single['model']} {single[f'{task} AUC']:.4f}: {outcome}")
    return found, "\n".join(lines)


def plots(runs, usage, out):
    """Expert usage (the multi-task model's gates), task weights, gradient cosine, validation curves."""
    from mtl_keras import plots as plots_lib

    first = runs[0]
    written = list(plots_lib.expert_usage(usage, out))
    written.append(_plot(plots_lib.task_weights, first.log, os.path.join(out, "task_weights.png")))
    written.append(_plot(plots_lib.gradient_cosine, first.log, os.path.join(out, "gradient_cosine.png")))
    written.append(_plot(plots_lib.validation_curves, {run.name: run.history for run in runs},
                         os.path.join(out, "validation_curves.png")))
    return [path for path in written if path]


def _plot(function, data, path):
    try:
        function(data, path)
    except ValueError as error:  # e.g. no cosine logged: say so, keep going
        print(f"  ({os.path.basename(path)} skipped: {error})")
        return None
    return path
