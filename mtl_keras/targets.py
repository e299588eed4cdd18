"""Checks of the label dict a MultiTaskModel trains on, run when the step is traced."""


def check_targets(y, model):
    """Returns y as a dict {task: labels}; a ValueError names what is wrong.

    Runs at trace time, so bad labels fail before any training step executes.
    """
    trained = model.trained_tasks
    if not isinstance(y, dict):
        if y is not None and len(trained) == 1:
            return check_targets({trained[0]: y}, model)
        raise ValueError(
            f"`y` must be a dict {{task: labels}} with keys {trained}; got "
            f"{type(y).__name__}. Use NaN for a missing label."
        )
    check_task_keys(
        "y", y, model.task_names, trained,
        "pass them (NaN where a label is missing) or set their loss to None",
    )
    for task in trained:
        shape = tuple(y[task].shape)
        head = tuple(model.task_output_shapes[task])
        if not _compatible(shape, head):
            raise ValueError(
                f"`y[{task!r}]` must have shape [B], [B, 1] or {_fmt(head)} to match the "
                f"{task!r} head; got {_fmt(shape)}."
            )
    return y


def check_task_keys(argument, given, known, required=(), hint=""):
    """ValueError naming ``argument`` if it has a task not in ``known`` or lacks one of ``required``."""
    unknown = [task for task in given if task not in known]
    if unknown:
        raise ValueError(
            f"`{argument}` names unknown task(s) {unknown}; expected tasks among {list(known)}."
        )
    missing = [task for task in required if task not in given]
    if missing:
        raise ValueError(f"`{argument}` has no entry for task(s) {missing}: {hint}.")


def _compatible(label_shape, head_shape):
    label, head = label_shape[1:], head_shape[1:]
    if label in ((), (1,)):
        return True
    return len(label) == len(head) and all(
        a is None or b is None or a == b for a, b in zip(label, head)
    )


def _fmt(shape):
    return "[" + ", ".join("B" if i == 0 else str(d) for i, d in enumerate(shape)) + "]"
