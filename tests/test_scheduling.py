"""conftest's xdist scheduling: each shared-fixture unit still names tests that exist."""

import pathlib

from conftest import SHARED_FIXTURE_UNITS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_shared_fixture_unit_names_an_existing_test():
    # A renamed module or test would silently fall back to per-test scheduling (its fixture paid
    # on both workers again): this fails instead.
    for unit in SHARED_FIXTURE_UNITS:
        path, _, test = unit.partition("::")
        source = (ROOT / path).read_text()
        assert f"def {test}(" in source if test else "def test_" in source, unit
