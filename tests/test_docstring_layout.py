"""Every public class and function carries one docstring layout: Keras's.

A one-line summary; then the paper and formula (free text); then the sections, each under its
header and in this order where present: ``Args:``, ``Call arguments:``, ``Input shape:`` /
``Output shape:``, ``Returns:``, ``Raises:``, ``Example:`` (its ``>>>`` lines run as doctests in
tests/test_doctests.py). ``Args:`` names every parameter of the callable (a class: its
``__init__``), several on one line where they share a meaning (``beta, beta_sigma: ...``);
a record whose constructor arguments are its fields may name them under ``Attributes:``.
Only docstrings are read: no TensorFlow work beyond importing the package.
"""

import importlib
import inspect
import re

import pytest

from conftest import PUBLIC_MODULES, public_names

# the public modules, plus the foundation's and the helpers' modules
MODULES = PUBLIC_MODULES + [
    "mtl_keras.core.stateful", "mtl_keras.core.gram", "mtl_keras.core.draws", "mtl_keras.evaluation",
    "mtl_keras.training.factory",
]
ORDER = ["Args", "Attributes", "Call arguments", "Input shape", "Output shape", "Returns", "Raises", "Example"]
# headers that say the same as a section of ORDER in another dialect
ALIASES = {
    "Arguments": "Args", "Parameters": "Args", "Params": "Args", "Call args": "Call arguments",
    "Input": "Input shape", "Inputs": "Input shape", "Output": "Output shape", "Outputs": "Output shape",
    "Return": "Returns", "Yields": "Returns", "Examples": "Example", "Usage": "Example",
}
HEADER = re.compile(r"^([A-Z][A-Za-z ]*):\s*$")


def public_callables():
    """{"module.qualname": class or function} defined in mtl_keras, once each."""
    found = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if value.__module__.startswith("mtl_keras"):
                found.setdefault(f"{value.__module__}.{value.__qualname__}", value)
    return found


def parameters(value):
    """The names the callable takes (a class: its ``__init__``), less self, *args and **kwargs.

    A class that keeps its framework's ``__init__`` (a Keras layer's) documents none of its own.
    """
    function = value.__init__ if inspect.isclass(value) else value
    if inspect.isclass(value) and not getattr(function, "__module__", "").startswith("mtl_keras"):
        return []
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    return [p.name for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def sections(lines):
    """[(header, line index)] of the headers standing alone at the docstring's left margin."""
    found = []
    for index, line in enumerate(lines):
        match = HEADER.match(line)
        if match and (match.group(1) in ORDER or match.group(1) in ALIASES):
            found.append((match.group(1), index))
    return found


def documented_arguments(lines, start):
    """The names the ``Args:`` section opening at ``start`` describes ("a, b (int): ..." names a, b)."""
    body = []
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith((" ", "\t")):
            break  # back at the margin: the next section or paragraph
        body.append(line)
    entries = [line for line in body if line.strip()]
    if not entries:
        return set()
    indent = min(len(line) - len(line.lstrip()) for line in entries)
    names, head = set(), ""
    for line in entries:
        if len(line) - len(line.lstrip()) == indent or head:
            head += line.strip()
            if head.endswith(","):
                continue  # a list of names wrapped onto the next line
            if ":" in head:
                names.update(part.strip().strip("*`") for part in re.sub(r"\(.*?\)", "", head.split(":", 1)[0]).split(","))
            head = ""
    return names


def layout_problems(value):
    """What keeps ``value``'s docstring from Keras's layout (an empty list when it follows it)."""
    doc = inspect.getdoc(value)
    if not doc:
        return ["no docstring"]
    lines = doc.splitlines()
    problems = []
    if HEADER.match(lines[0]) or (len(lines) > 1 and lines[1].strip()):
        problems.append("the first line is not a one-line summary followed by a blank line")
    found = sections(lines)
    headers = [header for header, _ in found]
    for header in headers:
        if header in ALIASES:
            problems.append(f"'{header}:' where Keras writes '{ALIASES[header]}:'")
    canonical = [header for header in headers if header in ORDER]
    if len(set(canonical)) < len(canonical):
        problems.append(f"a section twice: {canonical}")
    if canonical != sorted(canonical, key=ORDER.index):
        problems.append(f"sections out of order: {canonical} (Keras: {ORDER})")
    example = [index for header, index in found if header == "Example"]
    if not example or not any(line.lstrip().startswith(">>>") for line in lines[example[0]:]):
        problems.append("no 'Example:' section with '>>>' lines")
    wanted = parameters(value)
    # a record (a dataclass) whose constructor arguments are its fields lists them as Attributes
    args = [index for header, index in found if header == "Args"] or [
        index for header, index in found if header == "Attributes"]
    if wanted and not args:
        problems.append(f"no 'Args:' section for {wanted}")
    elif wanted:
        missing = [name for name in wanted if name not in documented_arguments(lines, args[0])]
        if missing:
            problems.append(f"'Args:' does not name {missing}")
    return problems


def test_the_walk_finds_the_public_names():
    objects = public_callables()
    assert len(objects) > 100
    for name in ("mtl_keras.models.experts.mmoe", "mtl_keras.core.stateful.StatefulObject",
                 "mtl_keras.evaluation.auc"):
        assert name in objects


@pytest.mark.parametrize("good", [True, False])
def test_the_checks_tell_a_good_docstring_from_a_bad_one(good):
    def scaled(x, beta, beta_sigma=1.0):
        """Scales ``x``.

        Paper text.

        Args:
            x: the input.
            beta, beta_sigma (float): the scales.

        Returns:
            The scaled input.

        Example:

        >>> scaled(1.0, 2.0)
        2.0
        """

    def unordered(x, beta):
        """Scales ``x``
        over two lines.

        Example:

        >>> unordered(1.0, 2.0)

        Arguments:
            x: the input.

        Args:
            x: the input; beta is not named at an entry's margin.
        """

    problems = layout_problems(scaled if good else unordered)
    if good:
        assert problems == []
    else:
        text = "\n".join(problems)
        for expected in ("one-line summary", "'Arguments:' where Keras writes 'Args:'", "out of order",
                         "does not name ['beta']"):
            assert expected in text


def test_every_public_name_follows_the_layout():
    offenders = {name: problems for name, value in sorted(public_callables().items())
                 if (problems := layout_problems(value))}
    report = "\n".join(f"{name}: {'; '.join(problems)}" for name, problems in offenders.items())
    assert not offenders, f"{len(offenders)} public names leave Keras's docstring layout:\n{report}"
