"""Synthetic predictions shaped like the course's evaluation set, for the demo and for tests.

6,430 rows, K = 113 classes with a long tail (val tiers 5,155 / 1,065 / 210 rows under the
default 20/60 rank cut-offs), and three arms that behave like the course's: a calibrated teacher,
an over-confident vanilla student (post-hoc T ≈ 1.4) and a distilled student that sits between
them (closer to the teacher, better calibrated, slightly more accurate). Rare classes are weakly
learnt and pulled towards the head, as real long-tail classifiers are. Nothing here is real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from distillab.calibrate.temperature import TemperatureScaler
from distillab.io import save_predictions, write_json_atomic

COURSE_TIER_ROWS = (5155, 1065, 210)  # val rows per tier in the course
COURSE_TIER_CLASSES = (20, 40, 53)  # classes per tier at K = 113
# Per-tier strength of the true-class signal (head, mid, tail) for each arm's raw logits.
SIGNAL = {"teacher": (3.0, 2.9, 2.5), "vanilla": (2.7, 2.4, 2.0), "student_own": (2.5, 2.2, 1.9)}
OVERCONFIDENCE = {"teacher": 1.0, "vanilla": 1.4, "distilled": 1.1}  # multiplier on calibrated logits
GRID = {"kd_T1_a70": (1.0, 0.7, 0.3, 1.25), "kd_T8_a90": (8.0, 0.9, 0.2, 1.05)}  # T, alpha, teacher mix, conf


def _tier_sizes(total: int, k: int) -> tuple[list[int], list[int]]:
    """Rows and classes per tier, scaled from the course's shape."""
    classes = [max(1, round(k * c / 113)) for c in COURSE_TIER_CLASSES[:2]]
    classes.append(k - sum(classes))
    if classes[2] < 1:
        raise ValueError(f"k={k} is too small for three tiers; use k >= 4")
    rows = [round(total * r / 6430) for r in COURSE_TIER_ROWS[1:]]
    rows.insert(0, total - sum(rows))
    return rows, classes


def _rank_counts(rows: list[int], classes: list[int]) -> np.ndarray:
    """Rows per class in rank order: a 1/rank law, scaled to each tier's total (largest remainder)."""
    counts, start = [], 1
    for tier_rows, tier_classes in zip(rows, classes):
        weights = 1.0 / np.arange(start, start + tier_classes)
        exact = np.maximum(weights / weights.sum() * tier_rows, 1.0)
        base = np.floor(exact).astype(np.int64)
        remainder = tier_rows - base.sum()
        if remainder < 0:
            raise ValueError(f"{tier_rows} rows cannot cover {tier_classes} classes")
        base[np.argsort(-(exact - base), kind="stable")[:remainder]] += 1
        counts.append(np.sort(base)[::-1])
        start += tier_classes
    return np.concatenate(counts)


def _calibrated(raw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return raw / TemperatureScaler().fit(raw, labels).temperature_


def make_example(out_dir: str | Path, seed: int = 0, n: int = 6430, k: int = 113, grid: bool = False) -> dict:
    """Write ``teacher.npz``, ``vanilla.npz``, ``distilled.npz`` (+ sidecars), ``train_counts.json``
    and ``classes.json`` under ``out_dir``; return their paths. ``grid=True`` adds two more KD arms."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    tier_rows, tier_classes = _tier_sizes(n, k)
    val_by_rank = _rank_counts(tier_rows, tier_classes)
    class_of_rank = rng.permutation(k)  # class ids are not frequency ordered (the course's are alphabetical)
    val_counts = np.zeros(k, dtype=np.int64)
    val_counts[class_of_rank] = val_by_rank
    # ~9 training rows per val row; the rank term keeps counts strictly decreasing so tiers are exact.
    train_counts = np.zeros(k, dtype=np.int64)
    train_counts[class_of_rank] = 9 * val_by_rank + (k - np.arange(k))
    labels = rng.permutation(np.repeat(np.arange(k), val_counts))
    tier_index = np.repeat([0, 1, 2], tier_classes)[np.argsort(class_of_rank)][labels]  # 0 head, 1 mid, 2 tail
    log_prior = np.log(train_counts / train_counts.sum())
    shared = rng.standard_normal((n, k))  # what every model finds ambiguous about a row

    def raw_logits(signal: tuple[float, float, float], own_weight: float) -> np.ndarray:
        noise = np.sqrt(1 - own_weight**2) * shared + own_weight * rng.standard_normal((n, k))
        z = 1.2 * noise + 0.3 * log_prior  # the prior pulls rare classes towards the head
        z[np.arange(n), labels] += np.asarray(signal)[tier_index]
        return z

    teacher = _calibrated(raw_logits(SIGNAL["teacher"], 0.5), labels)
    vanilla = OVERCONFIDENCE["vanilla"] * _calibrated(raw_logits(SIGNAL["vanilla"], 0.6), labels)
    own = _calibrated(raw_logits(SIGNAL["student_own"], 0.6), labels)

    def distilled_like(mix: float, conf: float) -> np.ndarray:
        return conf * _calibrated(mix * teacher + (1 - mix) * own, labels)

    arms = {
        "teacher": (teacher, {"loss": "teacher"}),
        "vanilla": (vanilla, {"loss": "vanilla"}),
        "distilled": (distilled_like(0.25, OVERCONFIDENCE["distilled"]), {"loss": "kd", "T": 4.0, "alpha": 0.7}),
    }
    if grid:
        for name, (t, alpha, mix, conf) in GRID.items():
            arms[name] = (distilled_like(mix, conf), {"loss": "kd", "T": t, "alpha": alpha})

    classes = [f"issue-{c:03d}" for c in range(k)]
    ids = np.array([f"val-{i:05d}" for i in range(n)])
    paths = {}
    for name, (logits, recipe) in arms.items():
        meta = {
            "model": f"synthetic-{name}",
            "arm": name,
            "recipe": recipe,
            "params": 32_000_000_000 if name == "teacher" else 149_691_761,
            "serving": {"ms_per_example": 180.0 if name == "teacher" else 4.2, "batch_size": 32, "device": "synthetic"},
            "temperature": None,
            "classes": classes,
        }
        # fp16 like the course's files.
        paths[name] = save_predictions(out_dir / f"{name}.npz", logits.astype(np.float16), labels, ids=ids, meta=meta)
    write_json_atomic(out_dir / "train_counts.json", train_counts.tolist())
    write_json_atomic(out_dir / "classes.json", classes)
    paths["train_counts"] = out_dir / "train_counts.json"
    paths["classes"] = out_dir / "classes.json"
    return paths
