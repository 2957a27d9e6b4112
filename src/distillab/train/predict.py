"""Predictions for evaluation splits, in the predictions format, plus the sidecar the audit reads.

Several processes each predict a shard; ``accelerator.gather_for_metrics`` drops the rows that
Accelerate duplicated to even out the last batch, and the gathered row indices are checked to
cover every row exactly once, so the file always has exactly ``n`` rows in dataset order.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from distillab.errors import InputError
from distillab.io import save_predictions

# Serving cost protocol (DESIGN.md): batch 32, median of 5 timed runs after 3 warm-ups.
SERVING_BATCH = 32
SERVING_WARMUPS = 3
SERVING_RUNS = 5


def model_logits(output) -> torch.Tensor:
    """HF models return an output object; the bow student returns the logits tensor itself."""
    return output.logits if hasattr(output, "logits") else output


@torch.no_grad()
def predict_logits(accelerator, model, student, features, batch_size: int) -> np.ndarray:
    """Logits (float32 [n, K]) for every featurised row, in row order, on all processes at once."""
    n = len(features)
    loader = torch.utils.data.DataLoader(
        range(n),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=lambda rows: {**student.collate(features, rows), "rows": torch.tensor(rows)},
    )
    loader = accelerator.prepare_data_loader(loader)
    model.eval()
    chunks, seen = [], []
    for batch in loader:
        rows = batch.pop("rows")
        with accelerator.autocast():
            logits = model_logits(model(**batch)).float()
        logits, rows = accelerator.gather_for_metrics((logits, rows))
        chunks.append(logits.cpu())
        seen.append(rows.cpu())
    rows = torch.cat(seen).numpy()
    if rows.shape != (n,) or not np.array_equal(np.sort(rows), np.arange(n)):
        raise RuntimeError(f"prediction gathered {rows.size} rows for {n} inputs (duplicates or gaps)")
    out = np.empty((n, torch.cat(chunks).shape[1]), dtype=np.float32)
    out[rows] = torch.cat(chunks).numpy()
    return out


@torch.no_grad()
def serving_cost(model, student, texts: list[str], device: torch.device, autocast) -> dict:
    """Milliseconds per example for raw texts → logits (featurising included) at batch 32."""
    if not texts:
        raise InputError("cannot time serving on an empty split")
    batch_texts = [texts[i % len(texts)] for i in range(SERVING_BATCH)]
    model.eval()

    def run() -> float:
        start = time.perf_counter()
        features = student.featurize(batch_texts)
        batch = {k: v.to(device) for k, v in student.collate(features, np.arange(SERVING_BATCH)).items()}
        with autocast():
            model_logits(model(**batch))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    for _ in range(SERVING_WARMUPS):
        run()
    median = statistics.median(run() for _ in range(SERVING_RUNS))
    return {"ms_per_example": 1000.0 * median / SERVING_BATCH, "batch_size": SERVING_BATCH,
            "device": device_name(device)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def write_split_predictions(path: Path, logits: np.ndarray, split, meta: dict) -> Path:
    """One split's ``.npz`` (logits, labels, ids) and its ``.json`` sidecar, atomically."""
    return save_predictions(path, logits=logits, labels=split.labels, ids=split.ids, meta=meta)
