"""What int8 changes, measured on the same rows as the float student (numpy in, JSON-ready dicts out).

- top-1 agreement float vs int8, and the flip rate in 15 equal-width bins of the float model's max
  probability (the audit's right-closed bins): flips should sit at low confidence;
- ΔECE, ΔNLL, Δaccuracy, Δmacro-F1 (int8 − float) with the audit's paired bootstrap (one
  ``RandomState(seed)`` stream, every resample scoring both models on the same rows; median and the
  0.025/0.975 quantiles);
- the temperature refitted on the int8 logits against the float one, fitted the same way on the same rows.
"""

from __future__ import annotations

import numpy as np

from distillab.audit import metrics as M
from distillab.audit.bootstrap import METRICS, pairwise_bootstrap, verdict
from distillab.calibrate.temperature import TemperatureScaler

FLOAT, INT8 = "float32", "int8"


def agreement(float_logits: np.ndarray, int8_logits: np.ndarray) -> dict:
    """Share of rows whose argmax (first index on ties) is the same, and how many flipped."""
    same = float_logits.argmax(axis=1) == int8_logits.argmax(axis=1)
    return {"top1": float(same.mean()) if same.size else None, "flips": int((~same).sum()), "n": int(same.size)}


def flips_by_confidence(float_logits: np.ndarray, int8_logits: np.ndarray, bins: int = M.DEFAULT_BINS) -> dict:
    """Flip rate per bin of the float model's max softmax probability (bins (e_i, e_{i+1}], as the audit's ECE)."""
    conf = M.softmax(float_logits).max(axis=1)
    flipped = float_logits.argmax(axis=1) != int8_logits.argmax(axis=1)
    b = M.confidence_bins(conf, bins)
    count = np.bincount(b, minlength=bins)
    flips = np.bincount(b, weights=flipped.astype(np.float64), minlength=bins).astype(np.int64)
    edges = M.bin_edges(bins)
    rows = [{"lower": float(edges[i]), "upper": float(edges[i + 1]), "n": int(count[i]), "flips": int(flips[i]),
             "flip_rate": float(flips[i] / count[i]) if count[i] else None} for i in range(bins)]
    n_flips = int(flipped.sum())
    return {
        "bins": bins,
        "confidence": "max softmax probability of the float32 model (raw logits, T = 1)",
        "rows": rows,
        "mean_confidence_all": float(conf.mean()) if conf.size else None,
        "mean_confidence_flipped": float(conf[flipped].mean()) if n_flips else None,
        # Where the flips are: the share of them below each confidence level.
        "flips_below": {f"{t:g}": (float((conf[flipped] <= t).mean()) if n_flips else None) for t in (0.5, 0.7, 0.9)},
        "rows_below": {f"{t:g}": (float((conf <= t).mean()) if conf.size else None) for t in (0.5, 0.7, 0.9)},
    }


def paired_deltas(probs: dict[str, np.ndarray], labels: np.ndarray, reference: str, metrics=METRICS,
                  n_resamples: int = 1000, seed: int = 42, bins: int = M.DEFAULT_BINS) -> dict:
    """``{candidate: {metric: {value, median, ci_low, ci_high, excludes_zero, verdict}}}``, candidate − reference.

    ``value`` is the difference on all rows; the rest come from the audit's paired bootstrap over these rows
    (:func:`distillab.audit.bootstrap.pairwise_bootstrap`, group ``overall``: its first draws from
    ``RandomState(seed)``).
    """
    names = list(probs)
    table = pairwise_bootstrap(probs, labels, np.full(labels.shape[0], "overall"), metrics=tuple(metrics),
                               groups=("overall",), n_resamples=n_resamples, seed=seed, bins=bins)["groups"]["overall"]
    j = names.index(reference)
    point = {name: metric_values(p, labels, bins) for name, p in probs.items()}
    out = {}
    for i, name in enumerate(names):
        if name == reference:
            continue
        out[name] = {}
        for k in metrics:
            low, high = table[k]["ci_low"][i][j], table[k]["ci_high"][i][j]
            out[name][k] = {"value": point[name][k] - point[reference][k], "median": table[k]["median"][i][j],
                            "ci_low": low, "ci_high": high, "excludes_zero": bool(low > 0 or high < 0),
                            "verdict": verdict(low, high, k)}
    return out


def metric_values(probs: np.ndarray, labels: np.ndarray, bins: int = M.DEFAULT_BINS) -> dict:
    """Macro-F1, accuracy, ECE and NLL on all rows, as the audit computes them."""
    summary = M.summary(probs, labels, probs.shape[1], bins=bins)
    return {k: summary[k] for k in ("macro_f1", "accuracy", "ece", "nll")}


def calibration(float_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray, cal_rows: np.ndarray,
                eval_rows: np.ndarray, n_resamples: int = 1000, seed: int = 42, bins: int = M.DEFAULT_BINS) -> dict:
    """Temperatures fitted on ``cal_rows`` for both models (the audit's exact fit) and their effect on ``eval_rows``.

    Candidates on the eval rows: float + T_float (the calibrated float student), int8 + T_float (its weights
    swapped for int8, temperature.json kept), int8 + T_int8 (refitted). Deltas against float + T_float
    come from the paired bootstrap on the eval rows.
    """
    t_float = TemperatureScaler().fit(float_logits[cal_rows], labels[cal_rows])
    t_int8 = TemperatureScaler().fit(int8_logits[cal_rows], labels[cal_rows])
    y = labels[eval_rows]
    z32, z8 = float_logits[eval_rows].astype(np.float64), int8_logits[eval_rows].astype(np.float64)
    candidates = {
        "float32+T_float32": M.softmax(z32 / t_float.temperature_),
        "int8+T_float32": M.softmax(z8 / t_float.temperature_),
        "int8+T_int8": M.softmax(z8 / t_int8.temperature_),
    }
    raw = {"float32": M.softmax(z32), "int8": M.softmax(z8)}
    values = {name: {k: v for k, v in metric_values(p, y, bins).items() if k in ("ece", "nll")}
              for name, p in {**raw, **candidates}.items()}
    deltas = paired_deltas(candidates, y, "float32+T_float32", metrics=("ece", "nll"), n_resamples=n_resamples,
                           seed=seed, bins=bins)
    warnings = [f"{name}: {s.bound_warning()}" for name, s in ((FLOAT, t_float), (INT8, t_int8)) if s.bound_warning()]
    return {
        "temperature_float32": t_float.temperature_,
        "temperature_int8": t_int8.temperature_,
        "temperature_ratio": t_int8.temperature_ / t_float.temperature_,
        "n_cal": int(cal_rows.size),
        "n_eval": int(eval_rows.size),
        "eval": values,
        "delta_vs_float32_calibrated": deltas,
        "verdict": _verdict(deltas["int8+T_float32"]["ece"], t_float.temperature_, t_int8.temperature_),
        "warnings": warnings,
    }


def _verdict(ece: dict, t_float: float, t_int8: float) -> str:
    """Does quantization undo calibration? Read from the CI of ECE(int8 + T_float) − ECE(float + T_float)."""
    ci = f"{ece['value']:+.4f} [{ece['ci_low']:+.4f}, {ece['ci_high']:+.4f}]"
    temps = f"refitted T {t_int8:.4f} vs {t_float:.4f} for float32"
    if ece["ci_low"] > 0:
        return (f"quantization undoes part of the calibration: with the float32 temperature the int8 student's ECE "
                f"is higher by {ci}; refit the temperature on the int8 logits ({temps})")
    if ece["ci_high"] < 0:
        return f"with the float32 temperature the int8 student's ECE is lower by {ci} ({temps})"
    return (f"quantization does not measurably undo calibration: ECE with the float32 temperature differs by {ci}, "
            f"which {verdict(ece['ci_low'], ece['ci_high'], 'ece')} ({temps})")

