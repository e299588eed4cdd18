"""The docstring examples of mtl_keras.features (and synthetic_recsys) run as written."""

import doctest
import importlib

import numpy as np
import pytest

from mtl_keras import features as F
from mtl_keras.backend import keras, tf

MODULES = ["layers", "numeric", "categorical", "sequence", "spec"]


@pytest.mark.parametrize("module", MODULES + ["recsys"])
def test_examples(module):
    name = "mtl_keras.datasets.recsys" if module == "recsys" else f"mtl_keras.features.{module}"
    globs = dict(vars(F), np=np, tf=tf, keras=keras)
    target = importlib.import_module(name)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(target, globs=dict(vars(target), **globs)) if t.examples]
    assert tests
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
