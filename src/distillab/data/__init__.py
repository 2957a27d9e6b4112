"""Datasets: load (Hub / CSV / JSONL / Parquet / lab datasets), labels, splits, tiers.

Attributes are imported lazily: the audit imports ``distillab.data.tiers`` and must not pay for
``datasets``/pyarrow (or even our loaders) just because this package's ``__init__`` ran.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TextSplit": "distillab.data.dataset",
    "TextDataset": "distillab.data.dataset",
    "train_counts": "distillab.data.dataset",
    "load_dataset": "distillab.data.load",
    "load_lab_dataset": "distillab.data.lab",
    "lab_dataset_names": "distillab.data.lab",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'distillab.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
