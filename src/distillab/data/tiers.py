"""Head / mid / tail tiers: which classes are frequent enough to learn, and which are not.

The course ranks classes by training-set frequency and cuts the ranking at 20 and 60
(head = ranks 1-20, mid = 21-60, tail = 61+); those cut-offs leave no tail below 61 classes, so
with fewer classes the default is thirds by rank. A row's tier is its true label's tier.
Numpy only: the audit imports this module and must stay light.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from distillab.errors import InputError
from distillab.io import TIERS, read_json

DEFAULT_CUTOFFS = (20, 60)  # course: most_common()[:20], [20:60], [60:]
MAX_COUNT = 10**15  # counts are int64 and exact in float64 up to 2**53; no training set comes near either


def rank_classes(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Class ids by descending count; equal counts keep ascending class id (a stable, documented tie rule)."""
    counts = np.asarray(counts)
    return np.argsort(-counts, kind="stable")


def default_cutoffs(k: int) -> tuple[tuple[int, int], str | None]:
    """Rank cut-offs for ``k`` classes when none are given, and a sentence saying so when they are not the course's.

    The course's (20, 60) whenever they leave a tail (k > 60), so its 113-class audit is unchanged;
    otherwise thirds by rank (k = 3: one class per tier), which fail only below three classes.
    """
    if k > DEFAULT_CUTOFFS[1]:
        return DEFAULT_CUTOFFS, None
    head = max(1, round(k / 3))
    mid = max(head + 1, round(2 * k / 3))
    note = (f"no cut-offs given and {k} classes, too few for the course's 20,60 (which need more than 60), so "
            f"thirds by rank: head = {_ranks(1, head)}, mid = {_ranks(head + 1, mid)}, tail = {_ranks(mid + 1, k)}")
    return (head, mid), note


def _ranks(first: int, last: int) -> str:
    if first > last:
        return "none"
    return f"rank {first}" if first == last else f"ranks {first}-{last}"


def assign_tiers(
    counts: Sequence[int] | np.ndarray,
    cutoffs: tuple[int, int] | None = DEFAULT_CUTOFFS,
    thresholds: tuple[float, float] | None = None,
) -> np.ndarray:
    """Per-class tier names (``[K]`` str).

    ``cutoffs=(a, b)``: ranks 1..a are head, a+1..b mid, the rest tail.
    ``thresholds=(h, m)`` (overrides cutoffs): count >= h is head, m <= count < h mid, the rest tail.
    """
    counts = np.asarray(counts)
    tiers = np.full(counts.shape[0], "tail", dtype="<U4")
    if thresholds is not None:
        head_min, mid_min = thresholds
        if not head_min > mid_min:
            raise InputError(f"tier thresholds must be decreasing (head > mid), got {head_min},{mid_min}")
        tiers[counts >= mid_min] = "mid"
        tiers[counts >= head_min] = "head"
        return tiers
    head_end, mid_end = cutoffs
    if not 0 < head_end < mid_end:
        raise InputError(f"tier cutoffs must satisfy 0 < head < mid, got {head_end},{mid_end}")
    order = rank_classes(counts)
    tiers[order[:head_end]] = "head"
    tiers[order[head_end:mid_end]] = "mid"
    return tiers


def tier_support(counts: np.ndarray, class_tiers: np.ndarray, names: Sequence[str]) -> list[dict]:
    """The course's tier support table: one row per class in rank order (rank starts at 1).

    A class with tier "" (absent from per-row tiers read from a file) gets tier None.
    """
    return [
        {"rank": rank, "class": int(c), "name": names[c], "count": int(counts[c]), "tier": str(class_tiers[c]) or None}
        for rank, c in enumerate(rank_classes(counts), start=1)
    ]


def load_train_counts(path: str | Path, classes: Sequence[str]) -> np.ndarray:
    """Per-class training counts (``[K]`` int64) from a JSON list/dict or a CSV file.

    JSON: a list of K counts (position = class id), or a dict keyed by class name or class id
    (classes not listed count 0). CSV: a header with ``count`` and one of ``class``/``label``/``name``/``id``.
    """
    path = Path(path)
    k = len(classes)
    if not path.exists():
        raise InputError(f"{path}: train counts file not found")
    if path.suffix.lower() == ".csv":
        pairs = _read_counts_csv(path)
    else:
        data = read_json(path)  # UTF-8, valid JSON, a readable file: one line naming it otherwise
        if isinstance(data, list):
            if len(data) != k:
                raise InputError(f"{path}: has {len(data)} counts but the predictions have {k} classes")
            pairs = list(enumerate(data))
        elif isinstance(data, dict):
            pairs = list(data.items())
        else:
            raise InputError(f"{path}: expected a JSON list of counts or a dict class -> count")
    return _counts_from_pairs(path, pairs, classes)


def _read_counts_csv(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            key = next((f for f in ("class", "label", "name", "id") if f in fields), None)
            if key is None or "count" not in fields:
                raise InputError(f"{path}: CSV needs a 'count' column and one of class/label/name/id (found: {fields})")
            return [(row[key], row["count"]) for row in reader]
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except csv.Error as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    except OSError as exc:  # a folder, no permission, ...
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _counts_from_pairs(path: Path, pairs: list, classes: Sequence[str]) -> np.ndarray:
    k = len(classes)
    by_name = {name: i for i, name in enumerate(classes)}
    counts = np.zeros(k, dtype=np.int64)
    seen: dict[int, Any] = {}
    for key, value in pairs:
        if isinstance(key, int):
            cls = key
        elif key in by_name:  # names win over digit strings: class names may themselves be digits
            cls = by_name[key]
        elif str(key).strip().lstrip("-").isdigit():
            cls = int(key)
        else:
            raise InputError(f"{path}: unknown class {key!r} (not a class name and not an id in [0, {k}))")
        if not 0 <= cls < k:
            raise InputError(f"{path}: class id {cls} is outside [0, {k})")
        if cls in seen:  # e.g. a CSV listing a class by name and again by id: which count is meant?
            raise InputError(f"{path}: class {classes[cls]!r} (id {cls}) is listed twice ({seen[cls]!r} and {key!r})")
        seen[cls] = key
        try:
            count = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{path}: count for class {key!r} is not a number: {value!r}") from None
        if not math.isfinite(count) or count < 0 or count != int(count):  # int(inf) would raise OverflowError
            raise InputError(f"{path}: count for class {key!r} must be a non-negative integer, got {value!r}")
        if count > MAX_COUNT:
            raise InputError(f"{path}: count for class {key!r} is {value!r}, more than {MAX_COUNT:.0e} rows; "
                             "is it really a count?")
        counts[cls] = int(count)
    return counts
