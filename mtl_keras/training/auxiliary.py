"""Small self-auxiliary towers (Wang et al., "Can Small Heads Help?", 2022).

Each auxiliary head is a small tower on the same label as its task, trained
with L = sum_t w_t [L_t + gamma L_t^aux] and dropped at serving. Inside the
functional graph the heads are extra outputs keyed ``<task>__aux``, so the
model's own config carries them through a `.keras` round trip in both Kerases.
"""

SUFFIX = "__aux"


def merge(outputs, auxiliary_outputs):
    """The functional graph's outputs: the heads, then the auxiliary heads."""
    auxiliary_outputs = dict(auxiliary_outputs or {})
    unknown = [task for task in auxiliary_outputs if task not in outputs]
    if unknown:
        raise ValueError(
            f"`auxiliary_outputs` names unknown task(s) {unknown}; expected tasks among {list(outputs)}."
        )
    clashing = [task for task in outputs if task.endswith(SUFFIX)]
    if clashing:
        raise ValueError(f"task names must not end in {SUFFIX!r}; got {clashing}.")
    merged = dict(outputs)
    merged.update({task + SUFFIX: tensor for task, tensor in auxiliary_outputs.items()})
    return merged


def split(graph_outputs):
    """(heads, auxiliary heads by task) from the functional graph's outputs."""
    heads = {k: v for k, v in graph_outputs.items() if not k.endswith(SUFFIX)}
    auxiliary = {k[: -len(SUFFIX)]: v for k, v in graph_outputs.items() if k.endswith(SUFFIX)}
    return heads, auxiliary
