"""One optimizer for the whole model, or one per group of variables.

Groups: "shared" (variables reached by two or more tasks), each task name (the
variables only that task reaches), and "default" (everything else, and the
groups not given). Per-task optimizers let, say, a sparse CVR tower learn
with its own rate while the shared experts use another.
"""

from mtl_keras.backend import keras


def resolve(optimizer, variable_tasks, variables, extra_variables, task_names):
    """(the model's main optimizer, [(optimizer, [variables])]).

    ``variable_tasks`` gives, for each of ``variables``, the tasks that reach it;
    ``extra_variables`` (a weighting's own) belong to "default".
    """
    if not isinstance(optimizer, dict):
        single = keras.optimizers.get(optimizer)
        return single, [(single, list(variables) + list(extra_variables))]
    known = {"shared", "default", *task_names}
    unknown = sorted(set(optimizer) - known)
    if unknown:
        raise ValueError(
            f"`optimizer` names unknown group(s) {unknown}; expected groups among "
            f"'shared', 'default' and the tasks {list(task_names)}."
        )
    optimizers = {group: keras.optimizers.get(value) for group, value in optimizer.items()}
    assignment = {}

    def place(group, variable):
        chosen = optimizers.get(group, optimizers.get("default"))
        if chosen is None:
            raise ValueError(
                f"`optimizer` has no group {group!r} and no 'default' for variable "
                f"{variable.name!r}; add one of them."
            )
        assignment.setdefault(id(chosen), (chosen, []))[1].append(variable)

    for variable, tasks in zip(variables, variable_tasks):
        if len(tasks) >= 2:
            place("shared", variable)
        elif len(tasks) == 1:
            place(next(iter(tasks)), variable)
        else:
            place("default", variable)
    for variable in extra_variables:
        place("default", variable)
    main = optimizers.get("default") or optimizers.get("shared") or next(iter(optimizers.values()))
    return main, list(assignment.values())
