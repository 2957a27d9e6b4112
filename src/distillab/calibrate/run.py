"""Fit a temperature on a predictions file's cal split and record it (sidecar and/or a JSON file)."""

from __future__ import annotations

import os
from pathlib import Path

from distillab.audit import metrics as M
from distillab.calibrate.temperature import SPLIT_SEED, TemperatureScaler, cal_eval_split, split_from_json
from distillab.errors import InputError
from distillab.io import load_predictions, read_json, sha256_file, sidecar_path, write_json_atomic


def calibrate_predictions(
    path: str | os.PathLike,
    cal_split: str | os.PathLike | None = None,
    split_seed: int = SPLIT_SEED,
    out: str | os.PathLike | None = None,
    update_sidecar: bool = True,
) -> dict:
    """Fit T on the cal split of ``path``; report raw vs scaled ECE/NLL on the eval split.

    The record is written to ``out`` (if given) and, with ``update_sidecar``, into the file's
    sidecar as ``temperature`` plus a ``calibration`` block, which is how later stages learn T.
    """
    path = Path(path)
    if not 0 <= split_seed < 2**32:  # RandomState's range
        raise InputError(f"--split-seed must be in [0, 2**32), got {split_seed}")
    preds = load_predictions(path)
    if cal_split is None:
        cal_rows, eval_rows = cal_eval_split(preds.n, split_seed)
        split_source = f"RandomState({split_seed}).permutation({preds.n}): first half cal, second half eval"
    else:
        cal_rows, eval_rows = split_from_json(read_json(cal_split), preds.ids, preds.n, str(cal_split))
        split_source = f"file {cal_split}"
    try:
        scaler = TemperatureScaler().fit(preds.logits[cal_rows], preds.labels[cal_rows])
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    y_eval = preds.labels[eval_rows]
    raw = M.softmax(preds.logits[eval_rows])
    scaled = scaler.predict_proba(preds.logits[eval_rows])
    record = {
        "temperature": scaler.temperature_,
        "file": str(path),
        "sha256": sha256_file(path),
        "split": split_source,
        "n_cal": int(cal_rows.size),
        "n_eval": int(eval_rows.size),
        "nll_cal_before": scaler.nll_before_,
        "nll_cal_after": scaler.nll_after_,
        "eval": {
            "raw": {"ece": M.ece(raw, y_eval), "nll": M.nll(raw, y_eval)},
            "scaled": {"ece": M.ece(scaled, y_eval), "nll": M.nll(scaled, y_eval)},
        },
    }
    if out is not None:
        write_json_atomic(out, record)
    if update_sidecar:
        meta = dict(preds.meta)
        meta["temperature"] = scaler.temperature_
        meta["calibration"] = {key: record[key] for key in ("split", "n_cal", "nll_cal_before", "nll_cal_after", "sha256")}
        write_json_atomic(sidecar_path(path), meta)
    return record
