"""Faults around the version folders: killed exports, a corrupt version, an empty base path.

1. An export process killed (SIGKILL) at a random point while it writes its
   version, ``trials`` times (each kill checked to have landed mid-export: its
   staging folder is left, its version folder absent): afterwards every
   integer-named folder in the base path loads as a whole version (exports go
   to a temporary folder renamed into place), and the server answers from a
   complete version throughout.
2. A version whose variables are truncated: the server's next poll skips it
   with a logged error while the previous version keeps serving.
3. A base path with no version: NOT_FOUND until one is exported, then served.

    python benchmarks/reliability/faults.py --trials 10
"""

import argparse
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = __import__("pathlib").Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import FEATURES, export_version, ranker  # noqa: E402

from mtl_keras.serving import PredictClient, ServingError  # noqa: E402
from mtl_keras.serving.servables import ModelVersions, Servable  # noqa: E402
from mtl_keras.serving.server import Server  # noqa: E402

X = np.ones((2, FEATURES), np.float32)
CHILD = (
    "import sys; sys.path.insert(0, {here!r}); from common import ranker, export_version; model = ranker({seed});"
    "print('ready', flush=True); export_version(model, {base!r}, version={version}); print('done', flush=True)"
)


def _wait_for(condition, seconds, interval=0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def _staging(base_path):
    """The exports begun and not renamed into place (write_version's temporary ".export-*" folders)."""
    return {e for e in os.listdir(base_path) if e.startswith(".export-")}


def _child(base_path, seed, version):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(here=str(HERE), seed=seed, base=str(base_path), version=version)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    return child


ATTEMPTS = 5  # per killed-export trial; see killed_exports


def _child_export_seconds(base_path):
    """How long an export process writes, from its staging folder's appearance to "done": the span
    the kills are spread over."""
    child = _child(base_path, 0, 1)
    assert _wait_for(lambda: _staging(base_path), 120, interval=0.005)
    started = time.perf_counter()
    assert child.stdout.readline().strip() == "done"
    seconds = time.perf_counter() - started
    child.wait()
    return seconds


def killed_exports(base_path, client, trials, seed=0):
    """Kills ``trials`` export processes at random points; returns the figures. An export that
    finishes before its kill (faster than the timed one: the machine's load changed) is checked
    like the others and its trial tried again with a kill drawn from a quarter of the span, up to
    ``ATTEMPTS`` times."""
    rng = random.Random(seed)
    export_seconds = _child_export_seconds(tempfile.mkdtemp(prefix="timing-"))
    half_versions, failed_requests, killed_mid_export, completed = [], 0, 0, 0
    version = 100
    for trial in range(trials):
        # A random point of the write (its first half: exports vary in length on a busy machine).
        span = 0.5 * export_seconds
        for _ in range(ATTEMPTS):
            version += 1
            earlier = _staging(base_path)  # left by the trials before
            child = _child(base_path, trial, version)
            began = _wait_for(lambda: _staging(base_path) - earlier, 120, interval=0.005)
            time.sleep(rng.uniform(0, span))
            child.send_signal(signal.SIGKILL)
            child.wait()
            finished = os.path.isdir(os.path.join(base_path, str(version)))
            completed += finished
            killed_mid_export += began and not finished and bool(_staging(base_path) - earlier)
            for entry in os.listdir(base_path):  # every integer folder must be a whole version
                if entry.isdigit():
                    try:
                        Servable(int(entry), os.path.join(base_path, entry))
                    except Exception as error:
                        half_versions.append(f"{entry}: {error}")
            try:
                client.predict({"features": X})
            except ServingError:
                failed_requests += 1
            if not finished:
                break
            span /= 4
    return {"trials": trials, "killed_mid_export": killed_mid_export, "exports_that_finished_first": completed,
            "half_versions_found": len(half_versions), "examples": half_versions[:3],
            "failed_requests": failed_requests, "export_seconds": round(export_seconds, 2)}


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def corrupt_version(base_path, server, client):
    """Copies the newest version with its variables cut in half; the server must skip it and keep serving."""
    newest = max(int(e) for e in os.listdir(base_path) if e.isdigit())
    corrupt = os.path.join(base_path, str(newest + 1))
    staging = tempfile.mkdtemp(prefix="corrupt-", dir=base_path)
    shutil.copytree(os.path.join(base_path, str(newest)), staging, dirs_exist_ok=True)
    for name in os.listdir(os.path.join(staging, "variables")):
        if name.startswith("variables.data"):
            path = os.path.join(staging, "variables", name)
            with open(path, "r+b") as handle:
                handle.truncate(os.path.getsize(path) // 2)
    errors = _Errors()
    logging.getLogger("mtl_keras.serving.servables").addHandler(errors)
    (versions,) = [v for v in server.models.by_name.values() if v.base_path == base_path]
    try:
        os.rename(staging, corrupt)
        # The server's poll has tried the version when it records it as failed (no fixed sleep).
        polled = _wait_for(lambda: newest + 1 in versions.failed, 30)
        logged = polled and any(f"version {newest + 1}" in m for m in errors.messages)
    finally:
        logging.getLogger("mtl_keras.serving.servables").removeHandler(errors)
    status = client.status()
    answer = client.predict({"features": X})
    shutil.rmtree(corrupt)
    return {"error_logged": logged, "log": errors.messages[:1], "served_versions": sorted(status),
            "previous_kept_serving": status == {newest: "AVAILABLE"} and answer["ctr"].shape == (2, 1)}


def empty_base_path(root):
    """A model whose base path has no version: NOT_FOUND, then served once a version is exported."""
    base = os.path.join(root, "empty")
    os.makedirs(base)
    server = Server([ModelVersions("empty", base)], port=0, poll_seconds=0.2).start()
    client = PredictClient(f"127.0.0.1:{server.port}", "empty")
    try:
        try:
            client.predict({"features": X})
            before = "OK"
        except ServingError as error:
            before = f"{error.code.name}: {error.message}"
        export_version(ranker(), base)
        exported = time.perf_counter()
        served = _wait_for(lambda: _answers(client), 30)
        return {"before_export": before, "served_after_export": served,
                "seconds_to_serve": round(time.perf_counter() - exported, 2)}
    finally:
        client.close()
        server.stop(grace=1)


def _answers(client):
    try:
        return client.predict({"features": X})["ctr"].shape == (2, 1)
    except ServingError:
        return False


def faults(trials=10):
    root = tempfile.mkdtemp(prefix="faults-")
    base = os.path.join(root, "ranker")
    export_version(ranker(), base, version=1)
    server = Server([ModelVersions("ranker", base)], port=0, poll_seconds=0.2).start()
    client = PredictClient(f"127.0.0.1:{server.port}", "ranker")
    try:
        figures = {"killed_exports": killed_exports(base, client, trials)}
        _wait_for(lambda: client.status() == {max(int(e) for e in os.listdir(base) if e.isdigit()): "AVAILABLE"}, 30)
        figures["corrupt_version"] = corrupt_version(base, server, client)
    finally:
        client.close()
        server.stop(grace=1)
    figures["empty_base_path"] = empty_base_path(root)
    shutil.rmtree(root, ignore_errors=True)
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=10)
    print(json.dumps(faults(parser.parse_args(argv).trials), indent=1))


if __name__ == "__main__":
    main()
