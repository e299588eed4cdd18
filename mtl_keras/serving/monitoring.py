"""TF Serving's request metrics in Prometheus text format (--monitoring_config_file).

Same names and labels as tensorflow_model_server's exporter: TensorFlow's
monitoring path with ``/`` turned into ``:``. ``:tensorflow:serving:request_count``
counts requests by model and status (``OK`` or the gRPC code name);
``:tensorflow:serving:request_latency`` is a histogram in microseconds by
model, API (Predict, Classify, ...) and entrypoint (GRPC or REST), and
``:tensorflow:serving:runtime_latency`` one of the model call alone (batching
wait included, as TF Serving's session run includes it) by model, API and
runtime ("TF1", TF Serving's name for a session), both with TF Serving's
buckets (10 us times powers of 1.8, 33 of them). TF Serving labels none of
them by signature, so neither do we.
"""

import bisect
import re
import threading

BOUNDS = [10 * 1.8**i for i in range(33)]
COUNT = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"
RUNTIME = ":tensorflow:serving:runtime_latency"
_HISTOGRAMS = {LATENCY: ("model_name", "API", "entrypoint"), RUNTIME: ("model_name", "API", "runtime")}


_CONFIG = re.compile(
    r'\s*(?:prometheus_config\s*:?\s*\{(?P<body>[^{}]*)\}\s*[,;]?\s*)?'
)
_FIELD = re.compile(r'\s*(?:enable\s*:\s*(?P<enable>true|false|1|0)|path\s*:\s*"(?P<path>[^"]*)")\s*[,;]?')


def parse_monitoring_config(text):
    """(enabled, path) of a MonitoringConfig text proto; ValueError, in TF Serving's words, for another text.

    The pip package of tensorflow-serving-api has no monitoring_config_pb2, so its two fields
    (``prometheus_config { enable, path }``) are read here.
    """
    match = _CONFIG.fullmatch(text)
    enable, path, body = False, "", (match["body"] or "") if match else None
    while body:
        field = _FIELD.match(body)
        if match is None or field is None or not field.group(0):
            raise ValueError(f"Error parsing text-format tensorflow.serving.MonitoringConfig: {text.strip()[:80]}")
        enable = enable or field["enable"] in ("true", "1")
        path = field["path"] if field["path"] is not None else path
        body = body[field.end():]
    if match is None:
        raise ValueError(f"Error parsing text-format tensorflow.serving.MonitoringConfig: {text.strip()[:80]}")
    return enable, path or "/monitoring/prometheus/metrics"


def _labels(names, values):
    return ",".join(f'{n}="{v}"' for n, v in zip(names, values))


class Metrics:
    """Thread-safe counters and histograms, rendered on demand."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = {}  # (model, status) -> n
        self._histograms = {name: {} for name in _HISTOGRAMS}  # name -> labels -> [buckets..., sum, count]

    def record(self, model, api, entrypoint, status, seconds):
        """A finished request: its count by status and its latency."""
        with self._lock:
            key = (model, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            self._add(LATENCY, (model, api, entrypoint), seconds)

    def record_runtime(self, model, api, seconds, runtime="TF1"):
        """A successful model call."""
        with self._lock:
            self._add(RUNTIME, (model, api, runtime), seconds)

    def _add(self, name, labels, seconds):
        micros = seconds * 1e6
        cell = self._histograms[name].setdefault(labels, [0] * (len(BOUNDS) + 3))
        cell[bisect.bisect_left(BOUNDS, micros)] += 1
        cell[-2] += micros
        cell[-1] += 1

    def prometheus(self):
        with self._lock:
            counts = dict(self._counts)
            histograms = {name: {k: list(v) for k, v in cells.items()} for name, cells in self._histograms.items()}
        lines = [f"# TYPE {COUNT} counter"]
        for key, value in sorted(counts.items()):
            lines.append(f"{COUNT}{{{_labels(('model_name', 'status'), key)}}} {value}")
        for name, cells in histograms.items():
            lines.append(f"# TYPE {name} histogram")
            for key, cell in sorted(cells.items()):
                labels = _labels(_HISTOGRAMS[name], key)
                total = 0
                for bound, count in zip(BOUNDS + [float("inf")], cell):
                    total += count
                    le = "+Inf" if bound == float("inf") else f"{bound:.6g}"
                    lines.append(f'{name}_bucket{{{labels},le="{le}"}} {total}')
                lines.append(f"{name}_sum{{{labels}}} {cell[-2]:.6g}")
                lines.append(f"{name}_count{{{labels}}} {cell[-1]}")
        return "\n".join(lines) + "\n"
