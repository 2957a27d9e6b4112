"""Selective prediction: how many rows clear a confidence threshold, and how accurate those rows are.

A deployment that auto-accepts ``max_prob >= t`` and escalates the rest needs this table; the SLA
threshold is the lowest t whose covered accuracy meets the target (course: 0.95).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_SLA = 0.95


def coverage_table(probs: np.ndarray, labels: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict]:
    """Per threshold: coverage, accuracy on the covered rows (None if none), n_covered."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    rows = []
    for t in thresholds:
        covered = confidence >= t  # inclusive, as the course
        n_covered = int(covered.sum())
        rows.append(
            {
                "threshold": float(t),
                "coverage": float(covered.mean()),
                "accuracy": float(correct[covered].mean()) if n_covered else None,
                "n_covered": n_covered,
            }
        )
    return rows


def sla(table: list[dict], target: float = DEFAULT_SLA) -> dict:
    """The lowest threshold whose covered accuracy is >= target; threshold None when none qualifies.

    ``best_accuracy`` is the highest covered accuracy in the table, reported either way so that a
    reader of "none" sees how far off the target was.
    """
    accuracies = [row["accuracy"] for row in table if row["accuracy"] is not None]
    best = max(accuracies) if accuracies else None
    for row in sorted(table, key=lambda r: r["threshold"]):
        if row["accuracy"] is not None and row["accuracy"] >= target:
            return {
                "target": target,
                "threshold": row["threshold"],
                "coverage": row["coverage"],
                "accuracy": row["accuracy"],
                "n_covered": row["n_covered"],
                "best_accuracy": best,
            }
    return {"target": target, "threshold": None, "coverage": None, "accuracy": None, "n_covered": None, "best_accuracy": best}
