"""The serving-cost protocol shared by students and reference baselines (no torch, no numpy).

A serving cost is a MEASUREMENT: it varies between identical runs, so it is stored under a
``measurements`` key and never compared byte for byte. Every model is timed the same way: one
batch of ``SERVING_BATCH`` raw texts, featurisation and the forward pass timed apart, after
warm-ups, over repeats, reported as the median with its min–max spread in ms per example.
"""

from __future__ import annotations

import statistics
from typing import Callable

SERVING_BATCH = 32
SERVING_WARMUPS = 3
SERVING_REPEATS = 7
SERVING_THREADS = 1


def spread(ms: list[float]) -> dict:
    """Median and min–max of per-example milliseconds."""
    return {"median": statistics.median(ms), "min": min(ms), "max": max(ms)}


def time_serving(run: Callable[[], tuple[float, float]]) -> dict:
    """Time ``run()`` → (featurise seconds, forward seconds) for one batch; the caller fixes the threads.

    ``ms_per_example`` (their sum) is what a serving constraint uses; ``forward_ms_per_example`` is
    what the reference procedure timed.
    """
    for _ in range(SERVING_WARMUPS):
        run()
    runs = [run() for _ in range(SERVING_REPEATS)]

    def per_example(seconds: list[float]) -> dict:
        return spread([1000.0 * s / SERVING_BATCH for s in seconds])

    return {
        "ms_per_example": per_example([f + m for f, m in runs]),
        "featurize_ms_per_example": per_example([f for f, _ in runs]),
        "forward_ms_per_example": per_example([m for _, m in runs]),
        "batch_size": SERVING_BATCH,
        "warmups": SERVING_WARMUPS,
        "repeats": SERVING_REPEATS,
        "threads": SERVING_THREADS,
    }
