"""Fit a temperature on a predictions file's cal split and record it (sidecar and/or a JSON file)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from distillab.audit import metrics as M
from distillab.calibrate.temperature import SPLIT_SEED, TemperatureScaler, cal_eval_split, split_from_json
from distillab.errors import InputError
from distillab.io import atomic_path, check_output_file, json_text, load_predictions, read_json, sha256_file, sidecar_path


def calibrate_predictions(
    path: str | os.PathLike,
    cal_split: str | os.PathLike | None = None,
    split_seed: int = SPLIT_SEED,
    out: str | os.PathLike | None = None,
    update_sidecar: bool = True,
    optimizer: str = "exact",
) -> dict:
    """Fit T on the cal split of ``path``; report raw vs scaled ECE/NLL on the eval split.

    The record is written to ``out`` (if given) and, with ``update_sidecar``, into the file's
    sidecar as ``temperature`` plus a ``calibration`` block, which is how later stages learn T.
    Both files are written or neither; ``out`` may not be one of the inputs.
    """
    path = Path(path)
    if not 0 <= split_seed < 2**32:  # RandomState's range
        raise InputError(f"--split-seed must be in [0, 2**32), got {split_seed}")
    if out is not None:
        _check_out(Path(out), path, cal_split, update_sidecar)
    preds = load_predictions(path)
    if cal_split is None:
        cal_rows, eval_rows = cal_eval_split(preds.n, split_seed)
        split_source = f"RandomState({split_seed}).permutation({preds.n}): first half cal, second half eval"
    else:
        cal_rows, eval_rows = split_from_json(read_json(cal_split), preds.ids, preds.n, str(cal_split))
        split_source = f"file {cal_split}"
    try:
        scaler = TemperatureScaler(optimizer=optimizer).fit(preds.logits[cal_rows], preds.labels[cal_rows])
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    y_eval = preds.labels[eval_rows]
    raw = M.softmax(preds.logits[eval_rows])
    scaled = scaler.predict_proba(preds.logits[eval_rows])
    record = {
        "temperature": scaler.temperature_,
        "optimizer": optimizer,
        "temperature_at_bound": scaler.at_bound_,
        "warning": scaler.bound_warning(),
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
    writes = {}
    if out is not None:
        writes[Path(out)] = json_text(record)
    if update_sidecar:
        meta = dict(preds.meta)
        meta["temperature"] = scaler.temperature_
        meta["calibration"] = {
            key: record[key] for key in ("split", "n_cal", "nll_cal_before", "nll_cal_after", "sha256", "optimizer",
                                         "temperature_at_bound")
        }
        writes[sidecar_path(path)] = json_text(meta)
    _write_all(writes)
    return record


def _check_out(out: Path, path: Path, cal_split, update_sidecar: bool) -> None:
    """``--out`` must be a writable file that is none of the inputs (it would be overwritten with JSON)."""
    check_output_file(out)
    inputs = {"the predictions file": path}
    if update_sidecar:
        inputs["its sidecar, which calibrate also writes"] = sidecar_path(path)
    if cal_split is not None:
        inputs["the --cal-split file"] = Path(cal_split)
    for what, other in inputs.items():
        if out.resolve() == other.resolve() or (out.exists() and other.exists() and os.path.samefile(out, other)):
            raise InputError(f"{out}: --out is {what}; give another file name")


def _write_all(texts: dict[Path, str]) -> None:
    """Write every file or none: each goes to a temporary file first, renamed only after all are written."""
    with contextlib.ExitStack() as stack:
        temps = {target: stack.enter_context(atomic_path(target)) for target in texts}
        for target, tmp in temps.items():
            tmp.write_text(texts[target], encoding="utf-8")
