"""Turn logits someone already computed (e.g. the course's ``train_test_logits_*.npz``) into a teacher cache.

Imported arrays get the same fingerprinted, checksummed cache as a teacher we ran ourselves, but
only after the rows are tied to the dataset: by the file's ``ids`` when it has them, else by
position in the chosen splits, and then every stored label must equal the dataset's label.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from distillab.errors import InputError
from distillab.io import sha256_file
from distillab.teacher.cache import DEFAULT_SHARD_ROWS, FP16_MAX, CacheWriter, removed_on_failure
from distillab.teacher.capture import run_shards, select_rows
from distillab.teacher.fingerprint import dataset_fingerprint, make_fingerprint


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """``logits`` (+ optional ``labels``, ``ids``) from a plain .npz; never unpickles."""
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files if key in ("logits", "labels", "ids")}
    except ValueError as exc:
        raise InputError(f"{path}: cannot read as a plain .npz ({exc}); object arrays are not accepted") from None
    except Exception as exc:  # zipfile.BadZipFile, OSError, ...
        raise InputError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc})") from None
    if "logits" not in arrays:
        raise InputError(f"{path}: no 'logits' array (need logits [rows, classes], optional labels and ids)")
    logits = arrays["logits"]
    if logits.ndim != 2 or not np.issubdtype(logits.dtype, np.floating):
        raise InputError(f"{path}: 'logits' must be a 2-D float array, got shape {logits.shape} dtype {logits.dtype}")
    return arrays


def align_rows(path: Path, arrays: dict[str, np.ndarray], ids: np.ndarray, labels: np.ndarray,
               classes: list[str]) -> np.ndarray:
    """Positions in the file of each dataset row, after checking ids and labels agree."""
    n_file = arrays["logits"].shape[0]
    if "ids" in arrays:
        file_ids = np.asarray(arrays["ids"]).astype(str)
        if file_ids.shape != (n_file,):
            raise InputError(f"{path}: 'ids' has shape {file_ids.shape}, expected ({n_file},)")
        index = {row_id: row for row, row_id in enumerate(file_ids.tolist())}
        if len(index) != n_file:
            raise InputError(f"{path}: duplicate row ids in 'ids'")
        missing = [row_id for row_id in ids.tolist() if row_id not in index]
        if missing:
            raise InputError(f"{path}: {len(missing)} dataset row(s) are not in the file's 'ids' (e.g. {missing[0]!r})")
        positions = np.array([index[row_id] for row_id in ids.tolist()], dtype=np.int64)
    else:
        if n_file != len(ids):
            raise InputError(
                f"{path}: {n_file} rows but the chosen splits hold {len(ids)}; without an 'ids' array rows are "
                "matched by position, so pick the splits the file was made from (--split) in that order"
            )
        positions = np.arange(n_file)
    if "labels" in arrays:
        file_labels = np.asarray(arrays["labels"])
        if file_labels.shape != (n_file,) or not np.issubdtype(file_labels.dtype, np.integer):
            raise InputError(f"{path}: 'labels' must be 1-D integers with {n_file} rows, got {file_labels.shape} "
                             f"{file_labels.dtype}")
        differ = np.flatnonzero(file_labels[positions] != labels)
        if differ.size:
            row = int(differ[0])
            found = int(file_labels[positions[row]])
            found_name = classes[found] if 0 <= found < len(classes) else f"out of range ({found})"
            raise InputError(
                f"{path}: labels disagree with the dataset on {differ.size} of {len(ids)} rows (first: row "
                f"{str(ids[row])!r}, file {found_name!r}, dataset {classes[int(labels[row])]!r}); wrong splits, row order "
                "or label list"
            )
    return positions


def check_values(path: Path, logits: np.ndarray, positions: np.ndarray, ids: np.ndarray,
                 temperature: float | None, dtype: str) -> None:
    """NaN/inf, or values fp16 cannot hold, are the file's fault: name it and its row before anything is written."""
    used = np.asarray(logits[positions], dtype=np.float32)
    bad = ~np.isfinite(used).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: NaN or inf in 'logits' at row {int(positions[row])} (row id {str(ids[row])!r}; "
                         f"{int(bad.sum())} such rows)")
    if dtype == "fp16":
        scaled = np.abs(used).max(axis=1) / np.float32(temperature or 1.0)
        if scaled.max(initial=0.0) > FP16_MAX:
            row = int(np.argmax(scaled))
            raise InputError(f"{path}: 'logits' at row {int(positions[row])} (row id {str(ids[row])!r}) reach "
                             f"{scaled[row]:.4g}, beyond fp16's range ({FP16_MAX:g}); use --dtype bf16 or fp32")


def import_logits(
    source: str | os.PathLike,
    dataset,
    out: str | os.PathLike,
    *,
    splits: list[str] | None = None,
    teacher_name: str | None = None,
    temperature: float | None = None,
    already_scaled_by: float | None = None,
    dtype: str = "fp16",
    shard_rows: int = DEFAULT_SHARD_ROWS,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Cache the logits in ``source`` for ``splits`` of ``dataset`` (all splits by default).

    ``temperature`` divides the logits now; ``already_scaled_by`` records a temperature applied
    before the file was written (the course's ``_final`` logits: 1.2538). The manifest records
    their product, i.e. the temperature relative to the teacher's raw logits. A failed import
    leaves nothing new in ``out`` (no ``in-progress.json``, no shards).
    """
    path = Path(source)
    arrays = read_arrays(path)
    classes = list(dataset.classes)
    if arrays["logits"].shape[1] != len(classes):
        raise InputError(f"{path}: logits have {arrays['logits'].shape[1]} columns but the dataset has "
                         f"{len(classes)} classes")
    splits, ids, texts, labels = select_rows(dataset, splits)
    positions = align_rows(path, arrays, ids, labels, classes)
    for value, what in ((temperature, "temperature"), (already_scaled_by, "already_scaled_by")):
        if value is not None and not value > 0:
            raise InputError(f"{what} must be a positive number, got {value}")
    check_values(path, arrays["logits"], positions, ids, temperature, dtype)
    recorded = None
    if temperature is not None or already_scaled_by is not None:
        recorded = (temperature or 1.0) * (already_scaled_by or 1.0)

    teacher = {"name": teacher_name or path.stem, "revision": None, "architecture": "imported",
               "weights_sha256": None, "tokenizer": None,
               "source_file": path.name, "source_sha256": sha256_file(path)}
    capture = {"runner": "import", "splits": splits, "temperature": temperature,
               "already_scaled_by": already_scaled_by, "dtype": dtype}
    fingerprint = make_fingerprint(dataset_fingerprint(dataset, splits, ids, labels), teacher, capture)
    writer = CacheWriter(out, ids=ids, labels=labels, texts=texts, classes=classes, fingerprint=fingerprint,
                         kind="dense", width=len(classes), dtype=dtype, temperature=recorded, shard_rows=shard_rows)

    def compute(start: int, stop: int, advance) -> dict[str, np.ndarray]:
        logits = np.asarray(arrays["logits"][positions[start:stop]], dtype=np.float32)
        if temperature is not None:
            logits = logits / np.float32(temperature)
        advance(stop - start)
        return {"logits": logits}

    with removed_on_failure(out):
        return run_shards(writer, compute, overwrite=overwrite, progress=progress, desc=f"import {path.name}")
