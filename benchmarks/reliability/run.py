"""The full reliability run behind ``make reliability``: fuzzing, load with hot reloads, faults.

Loopback only, every loop bounded. Prints the figures as JSON (``--out`` also
writes them); CI runs the same functions reduced (tests/serving/test_serving_reliability.py).

    python benchmarks/reliability/run.py [--requests 10000] [--clients 32] [--seconds 60] [--reloads 3] [--trials 10]
"""

import argparse
import json
import sys
import tempfile

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import export_version, ranker, start_server  # noqa: E402
from faults import faults  # noqa: E402
from fuzz import fuzz  # noqa: E402
from load import load  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    figures = {}
    base = tempfile.mkdtemp(prefix="reliability-") + "/ranker"
    model = ranker()
    export_version(model, base, version=1)
    servers = [start_server(base), start_server(base, batching=True, rest=False)]
    try:
        figures["fuzz"] = fuzz(servers, args.requests, model)
        figures["fuzz"].pop("codes")
        figures["load"] = load(servers, base, model, args.clients, args.seconds, args.reloads)
    finally:
        for server in servers:
            server.stop(grace=1)
    figures["faults"] = faults(args.trials)
    text = json.dumps(figures, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    failed = (figures["fuzz"]["failures"] or not figures["fuzz"]["valid_request_answered"]
              or figures["load"]["failures"] or figures["load"]["versions_never_served"]
              or figures["faults"]["killed_exports"]["half_versions_found"]
              or figures["faults"]["killed_exports"]["failed_requests"]
              or not figures["faults"]["corrupt_version"]["previous_kept_serving"]
              or not figures["faults"]["empty_base_path"]["served_after_export"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
