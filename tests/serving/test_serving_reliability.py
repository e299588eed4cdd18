"""The reliability runs of benchmarks/reliability, reduced for CI (``make reliability`` runs them in full):
500 fuzzed requests, 5 s of load by 32 clients with a hot reload, two killed exports, a corrupt version,
an empty base path. Loopback only; every loop bounded."""

import pathlib
import sys

import hypothesis  # noqa: F401  (the fuzz run needs it; the test extra installs it)
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "reliability"))

from common import export_version, ranker, start_server  # noqa: E402
from faults import faults  # noqa: E402
from fuzz import fuzz  # noqa: E402
from load import load  # noqa: E402


@pytest.fixture
def servers(tmp_path):
    """(plain server with REST, batching server) on one base path, and the Keras model of version 1."""
    model = ranker()
    export_version(model, tmp_path / "ranker", version=1)
    both = [start_server(tmp_path / "ranker"), start_server(tmp_path / "ranker", batching=True, rest=False)]
    yield both, tmp_path / "ranker", model
    for server in both:
        server.stop(grace=1)


def test_fuzzed_requests_get_keras_answers_or_tf_serving_errors(servers):
    both, _, model = servers
    figures = fuzz(both, 500, model)
    assert figures["requests"] >= 500
    assert figures["failures"] == 0, figures["problems"]
    assert figures["codes"]["OK"] >= 20  # enough answers were checked against Keras
    assert figures["valid_request_answered"]


def test_load_with_a_hot_reload_has_no_failed_request(servers):
    both, base, model = servers
    figures = load(both, str(base), model, clients=32, seconds=5, reloads=1)
    assert figures["failures"] == 0, figures["failure_examples"]
    assert figures["reloads"] == 1 and not figures["versions_never_served"]
    assert figures["requests"] > 100


def test_faults_never_leave_half_versions_or_stop_serving():
    figures = faults(trials=2)
    assert figures["killed_exports"]["killed_mid_export"] == 2, figures["killed_exports"]
    assert figures["killed_exports"]["half_versions_found"] == 0, figures["killed_exports"]["examples"]
    assert figures["killed_exports"]["failed_requests"] == 0
    assert figures["corrupt_version"]["error_logged"] and figures["corrupt_version"]["previous_kept_serving"]
    assert figures["empty_base_path"]["before_export"] == "NOT_FOUND: Servable not found for request: Latest(empty)"
    assert figures["empty_base_path"]["served_after_export"]
