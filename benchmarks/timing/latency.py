"""Latency of callables timed side by side: what the pruning benchmarks share.

Each callable is timed in interleaved rounds (a round times every callable once), so a
slowdown of the machine during the run reaches all of them alike; a round's figure is the
median of its calls after a warm-up, the result the median over rounds.
"""

import argparse
import json
import statistics
import time

import numpy as np

from mtl_keras.backend import tf


def median_latency(fn, feed, calls, warmup=10):
    """Median seconds of ``fn(**feed)`` over ``calls`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn(**feed)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn(**feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_ms(fns, feed, calls, rounds=3):
    """{name: median milliseconds} of each of ``fns`` ({name: callable}), ``calls`` split over the rounds."""
    samples = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(median_latency(fn, feed, calls // rounds))
    return {name: statistics.median(times) * 1000 for name, times in samples.items()}


def features(batch, width):
    """A float32 [batch, width] batch of normal draws, the same for every run of one batch size."""
    return tf.constant(np.random.default_rng(batch).normal(size=(batch, width)), tf.float32)


def arguments(description, configure=None):
    """The pruning benchmarks' command line: ``--calls`` (timed calls per callable), ``--width``, ``--out``,
    and what ``configure(parser)`` adds (a script's own options)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--out", default=None, help="a JSON file for the rows")
    if configure is not None:
        configure(parser)
    return parser.parse_args()


def write_rows(rows, path):
    """The result rows as JSON at ``path`` (None: nowhere)."""
    if path:
        with open(path, "w") as handle:
            json.dump(rows, handle, indent=2)
