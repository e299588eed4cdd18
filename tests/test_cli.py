"""The mtl-keras command: --help / --version without TensorFlow, every serve flag documented with its
default, TF Serving's warning for a base path without versions (at start and on every poll)."""

import logging
import os
import subprocess
import sys
import time

from mtl_keras import cli
from mtl_keras.serving.servables import ModelVersions
from mtl_keras.serving.server import Server

SCRIPT = os.path.join(os.path.dirname(sys.executable), "mtl-keras")
TF_SERVING_LINE = ("No versions of servable ranker found under base path {}. "
                   "Did you forget to name your leaf directory as a number (eg. '/1/')?")


def test_help_and_version_import_no_tensorflow():
    for flags in (["--help"], ["--version"], ["serve", "--help"], ["demo", "--help"]):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-X", "importtime", SCRIPT, *flags], capture_output=True,
                              text=True, timeout=60)
        seconds = time.perf_counter() - started
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
        assert not {"tensorflow", "keras", "tf_keras", "grpc"} & imported, flags
        assert seconds < 5, seconds  # about 0.3 s alone; TensorFlow's import alone takes 5 s or more
    version = subprocess.run([sys.executable, SCRIPT, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == "mtl-keras 0.1.0"


def test_every_serve_flag_has_help_and_shows_its_default():
    parser = cli.build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]
    flags = [a for a in serve._actions if a.option_strings != ["-h", "--help"]]
    assert len(flags) == 18
    for action in flags:
        assert action.help, action.option_strings
    text = " ".join(serve.format_help().split())
    for action in flags:
        assert f"{action.help} (default: {action.default})" in text, action.option_strings
    assert "(default: 8500)" in text and "(default: 1.0)" in text


def test_base_path_without_versions_logs_tf_servings_warning_at_start_and_each_poll(tmp_path, caplog):
    typo = str(tmp_path / "typo")
    server = Server([ModelVersions("ranker", typo)], port=0, poll_seconds=0.05)
    with caplog.at_level(logging.WARNING, logger="mtl_keras.serving.servables"):
        server.start()
        try:
            time.sleep(0.5)
        finally:
            server.stop(grace=0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == TF_SERVING_LINE.format(typo)
    assert lines.count(TF_SERVING_LINE.format(typo)) >= 3  # at start, then while polling
    caplog.clear()
    os.makedirs(os.path.join(typo, "1"))  # a version folder (unloadable): the warning stops
    with caplog.at_level(logging.WARNING, logger="mtl_keras.serving.servables"):
        ModelVersions("ranker", typo).poll()
    assert not any("No versions" in r.getMessage() for r in caplog.records)
