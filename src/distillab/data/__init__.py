"""Datasets: load (Hub / CSV / JSONL / Parquet / lab datasets), labels, splits, tiers.

Attributes are imported lazily: the audit imports ``distillab.data.tiers`` and must not pay for
``datasets``/pyarrow (or even our loaders) just because this package's ``__init__`` ran.
"""

from __future__ import annotations

from distillab.lazy import lazy_exports

_LAZY = {
    "TextSplit": "distillab.data.dataset",
    "TextDataset": "distillab.data.dataset",
    "train_counts": "distillab.data.dataset",
    "load_dataset": "distillab.data.load",
    "load_lab_dataset": "distillab.data.lab",
    "lab_dataset_names": "distillab.data.lab",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
