"""Predictions for evaluation splits, in the predictions format, plus the sidecar the audit reads.

Several processes each predict a shard; ``accelerator.gather_for_metrics`` drops the rows that
Accelerate duplicated to even out the last batch, and the gathered row indices are checked to
cover every row exactly once, so the file always has exactly ``n`` rows in dataset order.
"""

from __future__ import annotations

import copy
import hashlib
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from distillab.errors import InputError
from distillab.io import save_predictions
from distillab.measurements import SERVING_BATCH, SERVING_THREADS, time_serving

# Measured once per (architecture, inputs, device) in a process: arms that differ only in their
# loss share one measurement instead of nine noisy ones (see serving_cost).
_MEASURED: dict[str, dict] = {}


def model_logits(output) -> torch.Tensor:
    """HF models return an output object; the bow student returns the logits tensor itself."""
    return output.logits if hasattr(output, "logits") else output


@torch.no_grad()
def predict_logits(accelerator, model, student, features, batch_size: int) -> np.ndarray:
    """Logits (float32 [n, K]) for every featurised row, in row order, on all processes at once.

    The forward runs in float32, without the training autocast: under bf16 the classifier's
    output is rounded to 8 bits of mantissa, creating argmax ties and coarse calibration in
    the saved predictions; casting afterwards cannot bring the lost bits back.
    """
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


@contextmanager
def fixed_threads(n: int):
    """Run the block with ``n`` torch CPU threads and restore the caller's count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def architecture_key(model, student, texts: list[str], device: torch.device) -> str:
    """What determines the serving cost: the featuriser, every parameter's shape and dtype, inputs, device."""
    digest = hashlib.sha256()
    for part in (type(model).__qualname__, student.name, str(device), *texts):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
    for name, p in model.named_parameters():
        digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}\0".encode())
    return digest.hexdigest()[:16]


@torch.no_grad()
def serving_cost(model, student, texts: list[str], device: torch.device, autocast) -> dict:
    """A MEASUREMENT (never byte-identical between runs): ms per example, raw texts → logits, at batch 32.

    Featurisation (tokenising) and the forward pass are timed apart in each repeat; ``ms_per_example``
    is their sum, which is what a serving constraint uses (the reference timed the forward pass
    only: ``forward_ms_per_example``). Each is the median with its min–max spread over the repeats,
    after warm-ups, on a fixed thread count. The same architecture on the same inputs and device is
    measured once per process, so arms that differ only in their loss get one shared number.
    """
    if not texts:
        raise InputError("cannot time serving on an empty split")
    batch_texts = [texts[i % len(texts)] for i in range(SERVING_BATCH)]
    key = architecture_key(model, student, batch_texts, device)
    if key in _MEASURED:
        return copy.deepcopy(_MEASURED[key])
    model.eval()

    def run() -> tuple[float, float]:
        start = time.perf_counter()
        features = student.featurize(batch_texts)
        batch = {k: v.to(device) for k, v in student.collate(features, np.arange(SERVING_BATCH)).items()}
        featurised = time.perf_counter()
        with autocast():
            model_logits(model(**batch))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return featurised - start, time.perf_counter() - featurised

    with fixed_threads(SERVING_THREADS):
        _MEASURED[key] = {**time_serving(run), "device": device_name(device), "architecture": key}
    return copy.deepcopy(_MEASURED[key])


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def write_split_predictions(path: Path, logits: np.ndarray, split, meta: dict) -> Path:
    """One split's ``.npz`` (logits, labels, ids) and its ``.json`` sidecar, atomically."""
    return save_predictions(path, logits=logits, labels=split.labels, ids=split.ids, meta=meta)
