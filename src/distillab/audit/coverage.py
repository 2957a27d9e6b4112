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


SEARCH_QUANTILES = tuple(q / 20 for q in range(20))  # 0, 0.05, …, 0.95 of the observed confidence


def threshold_search(probs: np.ndarray, labels: np.ndarray, grid: Sequence[float] = DEFAULT_THRESHOLDS,
                     target: float = DEFAULT_SLA) -> dict:
    """The SLA threshold searched below the grid too, down to where the SLA stops holding.

    A grid starting at 0.5 cannot say whether a lower threshold would still meet the target (on an
    accurate model every grid point does, and "0.50" is the grid's bottom, not a finding). The
    search adds the observed confidence quantiles below the grid (rounded down to 2 decimals, so
    they print as they are), and reports where it stopped: ``floor`` is the lowest threshold
    searched (min(grid), or the lowest confidence rounded down to 2 decimals if that is lower);
    ``floor_hit`` says the SLA still held there; otherwise ``fails_below`` is the next lower threshold, where it no longer holds.
    """
    confidence = probs.max(axis=1)
    lowest = min(grid) if len(grid) else 1.0
    extra = {float(np.floor(q * 100) / 100) for q in np.quantile(confidence, SEARCH_QUANTILES)} if confidence.size else set()
    grid_set = {float(t) for t in grid}
    thresholds = sorted(grid_set | {t for t in extra if t < lowest})
    rows = coverage_table(probs, labels, thresholds)
    for row in rows:
        row["source"] = "grid" if row["threshold"] in grid_set else "confidence quantile"
    result = {"rows": rows, **sla(rows, target), "floor": thresholds[0] if thresholds else None,
              "floor_hit": False, "fails_below": None}
    if result["threshold"] is not None:
        below = [r for r in rows if r["threshold"] < result["threshold"]]
        result["floor_hit"] = not below
        if below:
            result["fails_below"] = {k: below[-1][k] for k in ("threshold", "coverage", "accuracy", "n_covered")}
    return result
