"""The public API of ../shared/API.md stays as it was: every public name, with a compatible signature.

``tests/data/public_api.json`` lists the names and signatures as they were before the
package was restructured (written by running this file: ``python tests/test_public_api.py``
with the old checkout on PYTHONPATH). A name may gain keyword arguments with defaults
(API.md welcomes them); it may not disappear, lose or rename an argument, or change a default.
"""

import importlib
import inspect
import json
import pathlib
import sys

from conftest import PUBLIC_MODULES, public_names
from mtl_keras.backend import IS_KERAS3

SNAPSHOT = pathlib.Path(__file__).parent / "data" / "public_api.json"
MODULES = PUBLIC_MODULES


def parameters(obj):
    """[(name, kind, default)] of a callable (a class: its __init__), or None."""
    try:
        signature = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    except (TypeError, ValueError):
        return None
    found = []
    for parameter in signature.parameters.values():
        if parameter.name == "self":
            continue
        default = None if parameter.default is inspect.Parameter.empty else repr(parameter.default)
        found.append([parameter.name, parameter.kind.name, default])
    return found


def public_api():
    """{"module.name": parameters or None} for every public name of the public modules."""
    api = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in public_names(module):
            value = getattr(module, name)
            if inspect.ismodule(value):
                continue
            api[f"{module_name}.{name}"] = parameters(value) if callable(value) else None
            if inspect.isclass(value):
                for attribute, member in vars(value).items():
                    if not attribute.startswith("_") and inspect.isfunction(member):
                        api[f"{module_name}.{name}.{attribute}"] = parameters(member)
    return api


def compatible(old, new):
    """Why ``new`` parameters break callers of ``old`` ones, or None."""
    if old is None or new is None:
        return None if (old is None) == (new is None) else "became or stopped being callable"
    by_name = {p[0]: p for p in new}
    for name, kind, default in old:
        if kind == "VAR_KEYWORD" and any(p[1] == "VAR_KEYWORD" for p in new):
            continue
        if name not in by_name:
            return f"lost argument {name!r}"
        if by_name[name][2] != default:
            return f"argument {name!r} default {default} -> {by_name[name][2]}"
        if kind == "POSITIONAL_OR_KEYWORD" and by_name[name][1] == "KEYWORD_ONLY":
            return f"argument {name!r} became keyword-only"
    old_positional = [p[0] for p in old if p[1] == "POSITIONAL_OR_KEYWORD"]
    new_positional = [p[0] for p in new if p[1] == "POSITIONAL_OR_KEYWORD"]
    if new_positional[: len(old_positional)] != old_positional:
        return f"positional order {old_positional} -> {new_positional}"
    old_names = {p[0] for p in old}
    for name, kind, default in new:
        if name not in old_names and default is None and kind not in ("VAR_POSITIONAL", "VAR_KEYWORD"):
            return f"new required argument {name!r}"
    return None


def test_every_public_name_keeps_a_compatible_signature():
    snapshot = json.loads(SNAPSHOT.read_text())["keras3" if IS_KERAS3 else "tf_keras"]
    now = public_api()
    broken = []
    for name, old in sorted(snapshot.items()):
        if name not in now:
            broken.append(f"{name}: gone")
        elif (why := compatible(old, now[name])) is not None:
            broken.append(f"{name}: {why}")
    assert len(snapshot) > 150
    assert not broken, "\n".join(broken)


def test_the_check_catches_a_lost_argument_and_a_changed_default():
    old = [["inputs", "POSITIONAL_OR_KEYWORD", None], ["num_experts", "POSITIONAL_OR_KEYWORD", "8"]]
    assert compatible(old, old + [["gate", "POSITIONAL_OR_KEYWORD", "'softmax'"]]) is None
    assert "lost" in compatible(old, old[:1])
    assert "default" in compatible(old, [old[0], ["num_experts", "POSITIONAL_OR_KEYWORD", "4"]])
    assert "required" in compatible(old, old + [["k", "POSITIONAL_OR_KEYWORD", None]])


if __name__ == "__main__":
    key = "keras3" if IS_KERAS3 else "tf_keras"
    data = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    data[key] = public_api()
    SNAPSHOT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"{key}: {len(data[key])} names -> {SNAPSHOT}", file=sys.stderr)
