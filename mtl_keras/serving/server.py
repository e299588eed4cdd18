"""A local server speaking TF Serving's gRPC API (PredictionService, ModelService).

For development, tests and laptops: the same requests, status codes and
messages as ``tensorflow_model_server`` (see SERVING.md). Production runs the
official server with the configuration in ``serving/``. Model calls run on a
thread pool; with batching on, gRPC runs on an asyncio event loop instead
(``services`` says why).
"""

import faulthandler
import logging
import os
import signal
import sys
import threading
from concurrent import futures

from mtl_keras.serving import validation
from mtl_keras.serving.batching import Batcher
from mtl_keras.serving.monitoring import Metrics
from mtl_keras.serving.rest import RestServer
from mtl_keras.serving.servables import from_model_config
from mtl_keras.serving.hosts import AsyncioGrpc, ThreadedGrpc
from mtl_keras.serving.services import (
    BatchingPredictionService,
    EventLoopModelService,
    ModelService,
    PredictionService,
)

log = logging.getLogger(__name__)


class _Models:
    """The models being served, by name; a config reload replaces the whole map at once."""

    def __init__(self, models, prefer_tflite=False):
        self.by_name = {m.name: m for m in models}
        self.prefer_tflite = prefer_tflite  # for the models of a config reload
        self._reload_lock = threading.Lock()

    def reload(self, models):
        """Serves ``models`` (ModelVersions) instead; the names of those left without a version.

        A model already served from the same base path keeps its loaded versions
        and takes the new policy and labels; the others load before the swap, so
        no request finds a listed model missing. Models left out stop serving.
        """
        with self._reload_lock:
            served = {}
            for model in models:
                old = self.by_name.get(model.name)
                if old is not None and old.base_path == model.base_path:
                    old.adopt(model)
                    model = old
                model.poll()
                served[model.name] = model
            self.by_name = served
            return sorted(name for name, model in served.items() if not model.loaded)

    def model_spec(self, request):
        """(name, version) after TF Serving's checks 1-3, labels resolved per model."""
        model = self.by_name.get(request.model_spec.name) if request.HasField("model_spec") else None
        return validation.model_spec(request, model.labels if model else {})

    def servable(self, name, version):
        model = self.by_name.get(name)
        servable = model.get(version) if model else None
        if servable is None:
            raise validation.not_found(name, version)
        return servable


class StartError(RuntimeError):
    """The models that did not load, in the words of TF Serving's ServerCore::WaitUntilModelsAvailable."""

    def __init__(self, models):
        # TF Serving waits for each model's latest version: name the newest that failed.
        parts = "".join(
            f"{{{{name: {m.name} version: {version}}} due to error: {error}}}, "
            for m in models for version, error in sorted(m.failed.items())[-1:]
        )
        super().__init__(f"{len(models)} model(s) did not become available: {{{parts}}}")


class Server:
    """gRPC server plus the pollers of its models' base paths."""

    def __init__(
        self, models, port, rest_port=None, poll_seconds=1.0, batching=None, max_workers=64,
        max_message_bytes=256 << 20, channel_arguments=(), socket_path=None, monitoring_path=None,
        rest_timeout_ms=30000, prefer_tflite=False,
    ):
        """``batching``: None, or the parameters of ``batching.parse_batching_parameters``;
        ``max_workers``: threads for model calls and other blocking work; ``channel_arguments``:
        extra gRPC server options (name, value), TF Serving's --grpc_channel_arguments;
        ``socket_path``: also serve gRPC on this Unix socket; ``monitoring_path``: serve
        Prometheus metrics there on the REST port."""
        self.batcher = Batcher(**batching) if batching else None
        self.models = _Models(models, prefer_tflite)
        self.poll_seconds = poll_seconds
        self.metrics = Metrics() if monitoring_path else None
        self.executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="serving")
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        given = {name for name, _ in channel_arguments}
        options = [o for o in options if o[0] not in given] + list(channel_arguments)
        if self.batcher is None:
            self.prediction_service = PredictionService(self.models, metrics=self.metrics)
            self.model_service = ModelService(self.models)
            self.grpc = ThreadedGrpc(self.prediction_service, self.model_service, port, options, self.executor)
        else:
            self.prediction_service = BatchingPredictionService(
                self.models, self.batcher, self.executor, metrics=self.metrics)
            self.model_service = EventLoopModelService(self.models, self.executor)
            self.grpc = AsyncioGrpc(self.prediction_service, self.model_service, port, options)
        if socket_path:
            self.grpc.server.add_insecure_port(f"unix:{socket_path}")
        self.port = self.grpc.port
        self.rest = (
            RestServer(self.prediction_service, self.model_service, rest_port, self.metrics, monitoring_path,
                       rest_timeout_ms)
            if rest_port is not None else None
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, daemon=True)

    def start(self):
        """Loads every model, then serves; raises ``StartError`` as TF Serving fails to start when a
        model has versions on disk and none of them loads (an empty base path still starts, and
        answers NOT_FOUND until a version appears)."""
        for model in self.models.by_name.values():
            model.poll()
        unavailable = [m for m in self.models.by_name.values() if m.failed and not m.loaded]
        if unavailable:
            self.executor.shutdown(wait=False)
            if self.batcher is not None:
                self.batcher.stop()
            raise StartError(unavailable)
        self.grpc.start()
        if self.rest is not None:
            self.rest.start()
        self._poller.start()
        return self

    def watch_config_file(self, path, seconds, text):
        """Re-reads ``path`` every ``seconds`` and reloads the models when its text differs from ``text``.

        TF Serving's --model_config_file_poll_wait_seconds: a file that fails to
        parse or names a model twice is logged and the models served stay as they are.
        """
        threading.Thread(target=self._watch, args=(path, seconds, text), daemon=True).start()

    def _watch(self, path, seconds, text):
        while not self._stop.wait(seconds):
            try:
                with open(path) as handle:
                    new_text = handle.read()
                if new_text == text:
                    continue
                text = new_text
                missing = self.models.reload(from_model_config(text, self.models.prefer_tflite))
            except Exception as error:  # a bad edit must not stop serving
                log.error("model config %s not applied: %s", path, error)
                continue
            if missing:
                log.warning("model config %s: no version available yet for %s", path, ", ".join(missing))

    def _poll_loop(self):
        while not self._stop.wait(self.poll_seconds):
            for model in self.models.by_name.values():
                try:
                    model.poll()
                except Exception as error:  # e.g. an unreadable base path: keep serving, retry next poll
                    log.error("polling %s failed: %s", model.base_path, error)

    def stop(self, grace=5.0):
        """Stops polling and lets in-flight requests finish (up to ``grace`` seconds)."""
        self._stop.set()
        if self.rest is not None:
            self.rest.stop()
        self.grpc.stop(grace)
        if self.batcher is not None:
            self.batcher.stop()
        self.executor.shutdown(wait=False)

    def serve_until_signal(self, grace=5.0, deadline_seconds=None, ready=None):
        """Serves until SIGTERM or SIGINT, then ``stop(grace)``. With ``deadline_seconds``, a stop
        that takes longer writes every thread's stack to stderr and ends the process with status 1:
        a server must not outlive its SIGTERM, and the stacks say where it hung. ``ready()`` runs
        once both signals are handled: a start-up line printed there is never followed by a
        signal's default action (termination without a stop)."""
        done = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: done.set())
        if ready is not None:
            ready()
        # A timed wait: a signal the kernel hands to another thread only sets CPython's flag, and
        # the main thread runs the handler when it next returns to the interpreter.
        while not done.wait(0.25):
            pass
        watchdog = None
        if deadline_seconds is not None:
            watchdog = threading.Timer(deadline_seconds, _abandon, args=(deadline_seconds,))
            watchdog.daemon = True
            watchdog.start()
            # faulthandler's own thread needs no GIL: a stop stuck in a thread that holds it
            # still ends, with the stacks, shortly after the deadline.
            faulthandler.dump_traceback_later(deadline_seconds + 2.0, exit=True)
        self.stop(grace)
        if watchdog is not None:
            watchdog.cancel()
            faulthandler.cancel_dump_traceback_later()


def _abandon(seconds):
    sys.stderr.write(f"mtl-keras serve: the server did not stop within {seconds} s of the signal; its threads:\n")
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    os._exit(1)


