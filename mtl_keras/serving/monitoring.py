"""TF Serving's request metrics in Prometheus text format (--monitoring_config_file).

Same names and labels as tensorflow_model_server's exporter: TensorFlow's
monitoring path with ``/`` turned into ``:``. ``:tensorflow:serving:request_count``
counts requests by model and status (``OK`` or the gRPC code name);
``:tensorflow:serving:request_latency`` is a histogram in microseconds by
model, API (Predict, Classify, ...) and entrypoint (GRPC or REST), with TF
Serving's buckets (10 us times powers of 1.8, 33 of them).
"""

import bisect
import threading

from google.protobuf import text_format

BOUNDS = [10 * 1.8**i for i in range(33)]
COUNT = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"


def parse_monitoring_config(text):
    """(enabled, path) of a MonitoringConfig text proto; ValueError for one that does not parse."""
    from tensorflow_serving.config import monitoring_config_pb2

    try:
        config = text_format.Parse(text, monitoring_config_pb2.MonitoringConfig())
    except text_format.ParseError as error:
        raise ValueError(f"Error parsing text-format tensorflow.serving.MonitoringConfig: {error}") from None
    return config.prometheus_config.enable, config.prometheus_config.path or "/monitoring/prometheus/metrics"


def _labels(names, values):
    return ",".join(f'{n}="{v}"' for n, v in zip(names, values))


class Metrics:
    """Thread-safe counters and histograms, rendered on demand."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = {}  # (model, status) -> n
        self._latency = {}  # (model, api, entrypoint) -> [bucket counts..., sum, count]

    def record(self, model, api, entrypoint, status, seconds):
        micros = seconds * 1e6
        with self._lock:
            key = (model, status)
            self._counts[key] = self._counts.get(key, 0) + 1
            cell = self._latency.setdefault((model, api, entrypoint), [0] * (len(BOUNDS) + 3))
            cell[bisect.bisect_left(BOUNDS, micros)] += 1
            cell[-2] += micros
            cell[-1] += 1

    def prometheus(self):
        with self._lock:
            counts, latency = dict(self._counts), {k: list(v) for k, v in self._latency.items()}
        lines = [f"# TYPE {COUNT} counter"]
        for key, value in sorted(counts.items()):
            lines.append(f"{COUNT}{{{_labels(('model_name', 'status'), key)}}} {value}")
        lines.append(f"# TYPE {LATENCY} histogram")
        for key, cell in sorted(latency.items()):
            labels = _labels(("model_name", "API", "entrypoint"), key)
            total = 0
            for bound, count in zip(BOUNDS + [float("inf")], cell):
                total += count
                le = "+Inf" if bound == float("inf") else f"{bound:.6g}"
                lines.append(f'{LATENCY}_bucket{{{labels},le="{le}"}} {total}')
            lines.append(f"{LATENCY}_sum{{{labels}}} {cell[-2]:.6g}")
            lines.append(f"{LATENCY}_count{{{labels}}} {cell[-1]}")
        return "\n".join(lines) + "\n"
