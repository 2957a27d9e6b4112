"""A tiny experiment for `distillab run` tests: 4 classes, 57 train + 57 test rows, an imported teacher.

Every stage is the real one (CSV dataset, imported teacher cache, bow students, audit, report),
at a size where a whole run takes seconds and needs no shared data.
"""

import csv
import random
from pathlib import Path

import numpy as np
import yaml

COUNTS = {"a": 30, "b": 14, "c": 9, "d": 4}  # per split: tiers [20, 6] give head a, mid b c, tail d


def write_dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split in ("train", "test"):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            for label, n in COUNTS.items():
                vocabulary = [f"{label}w{i}" for i in range(6)] + ["the", "of"]
                for _ in range(n):
                    writer.writerow([" ".join(rng.choice(vocabulary) for _ in range(8)), label])
    return root


def write_teacher(path: Path, data: Path, seed: int = 0, margin: float = 3.0) -> Path:
    """Teacher logits for every row of the dataset (by id), favouring the true label by ``margin``."""
    from distillab.data import load_dataset

    dataset = load_dataset({"path": str(data)})
    ids = np.concatenate([split.ids for split in dataset.splits.values()])
    labels = np.concatenate([split.labels for split in dataset.splits.values()])
    logits = np.random.default_rng(seed).normal(size=(len(ids), len(dataset.classes))).astype(np.float32)
    logits[np.arange(len(ids)), labels] += margin
    np.savez(path, logits=logits, labels=labels, ids=ids)
    return path


def tiny_config(tmp_path: Path, **overrides) -> dict:
    """Config values for the tiny experiment (teacher imported from ``tmp_path/teacher.npz``)."""
    data = tmp_path / "data"
    if not data.exists():
        write_dataset(data)
        write_teacher(tmp_path / "teacher.npz", data)
    values = {
        "name": "tiny",
        "output_dir": str(tmp_path / "run"),
        "data": {"path": str(data)},
        "eval_split": "test",
        "tiers": {"thresholds": [20, 6]},
        "teacher": {"import_npz": str(tmp_path / "teacher.npz")},
        "training": {"student": "bow", "epochs": 1, "batch_size": 8, "seed": 1, "bow_buckets": 1024, "bow_dim": 8},
        "arms": ["vanilla", "kd:T=2,alpha=0.5,name=kd"],
        "audit": {"n_resamples": 10},
    }
    values.update(overrides)
    return values


def write_config(tmp_path: Path, values: dict, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path
