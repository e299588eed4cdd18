"""Every ``>>>`` example in mtl_keras runs as written, under the Keras this process runs (CI: both).

An example sees its module's globals plus ``np``, ``tf`` and ``keras`` (as Keras's own
docstrings assume); anything else it imports itself. It runs in a scratch folder (files it
writes land there). ``# doctest: +SKIP`` is refused: an example that cannot run is not an
example. Every public class and function (the exports of the packages in PUBLIC, as
docs/api.md lists them) carries at least one example. mtl_keras.tfrs imports only under
tf_keras, so its examples run in the tf_keras pass.
"""

import doctest
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import mtl_keras
from mtl_keras.backend import IS_KERAS3, keras, tf

MODULES = ["mtl_keras"] + sorted(
    info.name for info in pkgutil.walk_packages(mtl_keras.__path__, "mtl_keras.", onerror=lambda name: None)
    if not (IS_KERAS3 and info.name.startswith("mtl_keras.tfrs"))
)
PUBLIC = ["mtl_keras", "mtl_keras.layers", "mtl_keras.models", "mtl_keras.losses", "mtl_keras.weighting",
          "mtl_keras.projection", "mtl_keras.callbacks", "mtl_keras.plots", "mtl_keras.features",
          "mtl_keras.datasets", "mtl_keras.export", "mtl_keras.serving"] + ([] if IS_KERAS3 else ["mtl_keras.tfrs"])


def examples_of(module):
    globs = dict(vars(module), np=np, tf=tf, keras=keras)
    return [test for test in doctest.DocTestFinder().find(module, module.__name__, globs=globs) if test.examples]


@pytest.mark.parametrize("name", MODULES)
def test_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tests = examples_of(importlib.import_module(name))
    skipped = [f"{test.name}: {example.source.strip()}" for test in tests for example in test.examples
               if example.options.get(doctest.SKIP)]
    assert not skipped, f"examples marked +SKIP (make them run): {skipped}"
    report = []
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    for test in tests:
        runner.run(test, out=report.append)
    assert runner.summarize(verbose=False).failed == 0, "".join(report)


def public_objects():
    found = {}
    for package in PUBLIC:
        module = importlib.import_module(package)
        # a module's public names as docs/gen_api.py takes them: __all__, else what it defines without "_"
        names = getattr(module, "__all__", None) or [
            name for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == package]
        for name in names:
            value = getattr(module, name)
            if inspect.isclass(value) or inspect.isfunction(value):
                found.setdefault(f"{value.__module__}.{value.__qualname__}", value)
    return found


def test_every_public_name_has_an_example():
    objects = public_objects()
    assert len(objects) > 40  # the walk found the packages' exports
    missing = sorted(name for name, value in objects.items() if ">>>" not in (inspect.getdoc(value) or ""))
    assert not missing, f"public names without a runnable example: {missing}"
