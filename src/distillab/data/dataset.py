"""The in-memory dataset every stage shares: splits of (id, text, label) plus the ordered class list.

Validation happens at construction, so a ``TextDataset`` that exists is well formed: ids are
unique across all splits, labels index ``classes``, no text is empty. Stages downstream (teacher
cache, trainer, audit) can then trust it and key everything by row id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from distillab.errors import InputError


@dataclass
class TextSplit:
    """One split. ``ids`` and ``labels`` are coerced to numpy (unicode / int64) on construction."""

    ids: np.ndarray  # [n] str, unique across the whole dataset, stable
    texts: list[str]
    labels: np.ndarray  # [n] int64, index into classes

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=str)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.texts = list(self.texts)
        n = len(self.texts)
        if self.ids.shape != (n,) or self.labels.shape != (n,):
            raise InputError(
                f"split has {n} texts but ids of shape {self.ids.shape} and labels of shape {self.labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, rows: np.ndarray) -> "TextSplit":
        """The rows at positions ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        return TextSplit(ids=self.ids[rows], texts=[self.texts[i] for i in rows], labels=self.labels[rows])


@dataclass
class TextDataset:
    name: str
    classes: list[str]  # class id = position
    splits: dict[str, TextSplit]  # e.g. {"train": ..., "test": ...}
    source: dict = field(default_factory=dict)  # provenance: where it was loaded from, options used

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        where = f"dataset {self.name!r}"
        if len(set(self.classes)) != len(self.classes):
            seen: set[str] = set()
            dup = next(c for c in self.classes if c in seen or seen.add(c))
            raise InputError(f"{where}: class {dup!r} is listed twice in classes")
        k = len(self.classes)
        for split_name, split in self.splits.items():
            bad = np.flatnonzero((split.labels < 0) | (split.labels >= k))
            if bad.size:
                row = int(bad[0])
                raise InputError(
                    f"{where}, split {split_name!r}, row {row} (id {str(split.ids[row])!r}): "
                    f"label {int(split.labels[row])} is outside [0, {k})"
                )
            empty = next((i for i, text in enumerate(split.texts) if not isinstance(text, str) or not text.strip()), None)
            if empty is not None:
                raise InputError(f"{where}, split {split_name!r}, row {empty} (id {str(split.ids[empty])!r}): empty text")
        all_ids = np.concatenate([s.ids for s in self.splits.values()]) if self.splits else np.array([], dtype=str)
        unique, counts = np.unique(all_ids, return_counts=True)
        if unique.size != all_ids.size:
            dup = str(unique[counts > 1][0])
            holders = [name for name, s in self.splits.items() if dup in set(s.ids.tolist())]
            raise InputError(f"{where}: row id {dup!r} occurs more than once (splits: {', '.join(holders)})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def content_hash(self) -> str:
        """sha256 over the class list and every split's (id, text, label name), in canonical order.

        Canonical order = splits by name, rows by id, so the hash names the *content*: reordering
        rows does not change it; changing any text, label, id, split membership or the class list
        (including its order, which defines class ids) does. Each record is one JSON line, so no
        two different contents can serialise to the same bytes.
        """
        digest = hashlib.sha256()
        digest.update(b"distillab-dataset-v1\n")
        digest.update(json.dumps(self.classes, ensure_ascii=False).encode("utf-8") + b"\n")
        for split_name in sorted(self.splits):
            split = self.splits[split_name]
            digest.update(json.dumps(["split", split_name, len(split)]).encode("utf-8") + b"\n")
            for row in np.argsort(split.ids, kind="stable"):
                record = [str(split.ids[row]), split.texts[row], self.classes[int(split.labels[row])]]
                digest.update(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        return digest.hexdigest()

    def summary(self) -> str:
        """One line per split, for logs and ``--help``-level inspection."""
        parts = [f"{self.name}: {self.num_classes} classes"]
        parts += [f"{name} {len(split):,} rows" for name, split in self.splits.items()]
        return ", ".join(parts)


def train_counts(dataset: TextDataset, split: str = "train") -> np.ndarray:
    """Rows per class in ``split`` as an int64 array [K] (zeros for absent classes); tiers rank by it."""
    if split not in dataset.splits:
        raise InputError(
            f"dataset {dataset.name!r} has no split {split!r} (splits: {', '.join(dataset.splits) or 'none'})"
        )
    return np.bincount(dataset.splits[split].labels, minlength=dataset.num_classes).astype(np.int64)
