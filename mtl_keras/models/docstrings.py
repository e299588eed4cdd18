"""The Args entries the builders document alike, written once.

A builder's docstring names a shared entry by a line holding only ``{entry}``
(``inputs``, ``task_types``, ``auxiliary_tower_units``, ``kernel_arguments``,
``gates``); ``@shared_entries`` puts the entry's text there, so ``help()``,
the doctests and docs/api.md read the whole text, and one phrasing serves
every builder.
"""

import re

ENTRIES = {
    "inputs": """\
inputs: Keras inputs (a tensor [B, D] or a dict of them, concatenated) or a
    ``FeatureSpec``.""",
    "task_types": """\
task_types: "binary" (sigmoid head) or "regression" (linear head); one
    string for every task or a dict by task.""",
    "auxiliary_tower_units": """\
auxiliary_tower_units: widths of a self-auxiliary tower per task (Wang et
    al., 2022), trained and dropped at export; None: none.""",
    "kernel_arguments": """\
kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
    as ``keras.layers.Dense`` takes them, for every layer with a kernel the
    model creates (``mtl_keras.layers.conventions``).""",
    "gates": """\
gate, k, gate_temperature, entropy_penalty: the gates: "softmax", or
    "dselect_k" / "dselect_k_static" (a ``DSelectKGate`` selecting ``k``
    experts, its entropy regulariser weighted by ``entropy_penalty``);
    ``gate_temperature`` (> 0) divides the gate logits.
balance_penalty, balance_form: a load-balancing loss per gate of this
    weight (0: none), "cv" or "switch" (``mtl_keras.layers.balance``).""",
}

_PLACE = re.compile(r"^( *)\{(\w+)\}$", re.M)


def shared_entries(builder):
    """Puts the text of each shared entry its docstring names (``{entry}`` alone on a line,
    indented as the Args entries are) in ``builder``'s docstring; returns ``builder``.

    Example:
    >>> def build(inputs):
    ...     '''A builder.
    ...
    ...     Args:
    ...         {inputs}
    ...     '''
    >>> for line in shared_entries(build).__doc__.splitlines()[3:5]:
    ...     print(line.strip())
    inputs: Keras inputs (a tensor [B, D] or a dict of them, concatenated) or a
    ``FeatureSpec``.
    """

    def fill(match):
        indent, name = match.groups()
        if name not in ENTRIES:
            raise ValueError(f"{builder.__name__}'s docstring names {{{name}}}, not one of {sorted(ENTRIES)}.")
        return "\n".join(indent + line for line in ENTRIES[name].split("\n"))

    builder.__doc__ = _PLACE.sub(fill, builder.__doc__)
    return builder
