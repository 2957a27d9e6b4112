"""Tune the demo's bag-of-n-grams student on a validation slice of R52 train (never on test).

Coordinate search from the current default: epochs, then learning rate, then embedding size, n-gram
order and hash buckets, each step keeping the best value so far (validation accuracy, then
macro-F1). Every candidate is the ``vanilla`` arm of ``distillab train``'s own trainer with the same
seed and data order, trained on 90% of train and scored on the other 10% (seeded, natural class
mix). Results go to ``--out`` as JSON and a table on stdout; the chosen settings belong in
``configs/default.yaml``.

    DISTILLAB_DATA_DIR=../shared/data python scripts/tune_bow_student.py --out runs/tune-bow
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from distillab.data import load_lab_dataset
from distillab.data.dataset import TextDataset
from distillab.io import write_json_atomic
from distillab.train.config import TrainConfig
from distillab.train.trainer import train_arm

SEED = 0
START = {"epochs": 5, "learning_rate": 5e-2, "bow_dim": 64, "bow_ngrams": 2, "bow_buckets": 2**18}
STEPS = [  # (setting, values tried), in this order
    ("epochs", [5, 10, 20, 40]),
    ("learning_rate", [2e-2, 5e-2, 1e-1, 2e-1]),
    ("bow_dim", [64, 128, 256]),
    ("bow_ngrams", [1, 2, 3]),
    ("bow_buckets", [2**18, 2**20, 2**21]),
]


def validation_dataset() -> TextDataset:
    """R52 train split 90/10 (seeded); the test split is left out entirely."""
    dataset = load_lab_dataset("r52")
    train = dataset.splits["train"]
    order = np.random.RandomState(SEED).permutation(len(train))
    held = len(order) // 10
    return TextDataset(dataset.name + "-tune", dataset.classes,
                       {"train": train.take(np.sort(order[held:])), "validation": train.take(np.sort(order[:held]))},
                       source={"derived": "r52 train, 90/10 split", "seed": SEED})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    dataset = validation_dataset()
    results: dict[str, dict] = {}

    def name_of(settings: dict) -> str:
        return "-".join(f"{k}={v}" for k, v in sorted(settings.items()))

    def score(settings: dict) -> tuple[float, float]:
        name = name_of(settings)
        if name not in results:
            config = TrainConfig(student="bow", batch_size=64, seed=42, eval_splits=("validation",), **settings)
            started = time.perf_counter()
            summary = train_arm(dataset, "vanilla", config.validate(), args.out / "arms" / name)
            results[name] = {"settings": settings, **summary["eval"]["validation"],
                             "seconds": round(time.perf_counter() - started, 1)}
            print(f"{name}: accuracy {results[name]['accuracy']:.4f} macro-F1 {results[name]['macro_f1']:.4f}", flush=True)
        return results[name]["accuracy"], results[name]["macro_f1"]

    best = dict(START)
    for setting, values in STEPS:
        best[setting] = max(values, key=lambda v: score({**best, setting: v}))
    write_json_atomic(args.out / "tuning.json", {"best": best, "start": START, "candidates": results,
                                                  "validation_rows": len(dataset.splits["validation"])})
    chosen = results[name_of(best)]
    print(json.dumps({"best": best, "accuracy": chosen["accuracy"], "macro_f1": chosen["macro_f1"]}, indent=2))


if __name__ == "__main__":
    main()
