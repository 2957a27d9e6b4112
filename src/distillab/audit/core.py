"""The audit: predictions in, ``audit.json`` + ``audit.md`` out. Reads top to bottom.

load and align inputs → class names → tiers → per-arm metrics (full set) → temperature scaling
(cal half fits, eval half judges) → paired bootstrap → transfer tests → write, atomically, only
after everything is computed, so bad input never leaves a partial ``audit.json``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

import distillab
from distillab.audit import metrics as M
from distillab.audit import transfer
from distillab.audit.bootstrap import METRICS, pairwise_bootstrap, paired_bootstrap
from distillab.audit.coverage import DEFAULT_SLA, DEFAULT_THRESHOLDS, coverage_table, sla, threshold_search
from distillab.calibrate.temperature import (
    MIN_CAL_ROWS, OPTIMIZERS, SPLIT_SEED, TemperatureScaler, cal_eval_split, split_from_json,
)
from distillab.data.tiers import TIERS, assign_tiers, default_cutoffs, load_train_counts, tier_support
from distillab.errors import InputError
from distillab.io import Predictions, atomic_dir, check_output_dir, json_text, load_predictions, read_json, sha256_file

SCHEMA_VERSION = 1
TEACHER = "teacher"
MAX_BINS = 10_000  # a reliability table is written per bin: 1e12 bins would exhaust memory, not inform
MAX_RESAMPLES = 100_000  # 1,000 take ~2 s on the course's 6,430 rows; 1e5 is already far past any use

PredictionsLike = str | os.PathLike | Predictions


def audit(
    arms: Mapping[str, PredictionsLike],
    baseline: str,
    teacher: PredictionsLike | None = None,
    distilled: str | None = None,
    calibrate: Sequence[str] | None = None,
    train_counts: str | os.PathLike | Sequence[int] | None = None,
    tier_cutoffs: tuple[int, int] | None = None,
    tier_thresholds: tuple[float, float] | None = None,
    bins: int = M.DEFAULT_BINS,
    n_resamples: int = 1000,
    seed: int = 42,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    sla_target: float = DEFAULT_SLA,
    cal_split: str | os.PathLike | None = None,
    classes: str | os.PathLike | Sequence[str] | None = None,
    reference_score: float | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    optimizer: str = "exact",
) -> dict:
    """Audit student ``arms`` against ``baseline`` (and the teacher, when given); return the audit dict.

    Every argument mirrors a ``distillab audit`` flag. ``calibrate=None`` fits a temperature for
    every arm; the baseline is always fitted because Test B needs it. ``optimizer`` fits T exactly
    ("exact") or as the course's torch LBFGS does ("reference"). ``tier_cutoffs=None``: the course's
    20,60 above 60 classes, else thirds by rank (:func:`default_cutoffs`, noted in ``settings``). With ``out``, writes
    ``out/audit.json`` and ``out/audit.md``, both or neither. Anything the reader must know but that
    does not stop the audit (rows aligned by position, a temperature on its bound, ``preds`` ties)
    is printed to stderr and listed in ``warnings``.
    """
    _check_settings(bins, n_resamples, seed, thresholds, sla_target, reference_score, optimizer)
    if out is not None:
        check_output_dir(out)  # before any work: a bad --out costs nothing

    # ---- inputs: load, check names, align rows to the reference (teacher, else first arm)
    if not arms:
        raise InputError("no arms given; pass at least one --arm NAME=FILE.npz")
    sources = dict(arms)
    if teacher is not None:
        if TEACHER in sources:
            raise InputError(f"arm name '{TEACHER}' is reserved for --teacher; rename the arm")
        sources = {TEACHER: teacher, **sources}
    preds = {name: _load(src) for name, src in sources.items()}
    students = [name for name in preds if name != TEACHER]
    if baseline not in students:
        raise InputError(f"--baseline {baseline!r} is not an arm (arms: {', '.join(students)})")
    if distilled is None:
        distilled = next((name for name in students if name != baseline), None)
    elif distilled not in students or distilled == baseline:
        raise InputError(f"--distilled {distilled!r} must be an arm other than the baseline (arms: {', '.join(students)})")
    calibrated = list(preds) if calibrate is None else list(dict.fromkeys([*calibrate, baseline]))
    unknown = [name for name in calibrated if name not in preds]
    if unknown:
        raise InputError(f"--calibrate {unknown[0]!r} is not an arm (arms: {', '.join(preds)})")
    preds, alignment = _align(preds)
    warnings = _alignment_warnings(preds, alignment)
    reference = next(iter(preds.values()))
    labels, ids, n, k = reference.labels, reference.ids, reference.n, reference.num_classes

    # ---- class names and tiers
    class_names, classes_source = _class_names(classes, preds, k)
    cutoffs_note = None
    if tier_cutoffs is None:
        tier_cutoffs, cutoffs_note = default_cutoffs(k)
    if train_counts is not None:
        counts = (
            np.asarray(train_counts, dtype=np.int64)
            if isinstance(train_counts, (list, tuple, np.ndarray))
            else load_train_counts(train_counts, class_names)
        )
        if counts.shape != (k,):
            raise InputError(f"train counts have {counts.shape[0]} entries but the predictions have {k} classes")
        class_tiers, tier_source = assign_tiers(counts, tier_cutoffs, tier_thresholds), "train_counts"
    elif any(p.tiers is not None for p in preds.values()):
        counts = np.bincount(labels, minlength=k)
        class_tiers, tier_source = _tiers_from_files(preds, labels, k), "file"
    else:
        counts = np.bincount(labels, minlength=k)
        class_tiers, tier_source = assign_tiers(counts, tier_cutoffs, tier_thresholds), "eval_labels"
        if tier_thresholds is not None:  # thresholds count training rows; an evaluation split has fewer per class
            warnings.append(
                f"--tier-thresholds {','.join(f'{t:g}' for t in tier_thresholds)} were applied to the evaluation "
                "rows' class counts, as no --train-counts were given: thresholds are meant for training counts and "
                "an evaluation split has fewer rows per class, so classes land in lower tiers than with training "
                "counts; pass --train-counts to tier by the training data")
    row_tiers = class_tiers[labels]
    # Each tier's label set is fixed on the full evaluated set (the course's TIER_LABELS), so on a
    # half or a resample a tier class without rows there still counts, with F1 0.
    tier_labels = {tier: np.unique(labels[row_tiers == tier]) for tier in TIERS}
    for tier in TIERS:
        if not (row_tiers == tier).any():
            if tier_source == "file":
                raise InputError(f"tier '{tier}' has no rows in the files' per-row tiers; pass --train-counts to compute tiers")
            cut = f"thresholds {tier_thresholds}" if tier_thresholds is not None else f"cutoffs {tier_cutoffs}"
            raise InputError(
                f"tier '{tier}' has no rows (tiers from {tier_source}, K={k}, {cut}); "
                "pass --tier-cutoffs or --tier-thresholds that give every tier some classes"
            )

    # ---- cal/eval split, checked before any heavy work
    if cal_split is None:
        cal_rows, eval_rows = cal_eval_split(n, SPLIT_SEED)
        split_source = f"RandomState({SPLIT_SEED}).permutation({n}): first half cal, second half eval"
    else:
        cal_rows, eval_rows = split_from_json(read_json(cal_split), ids, n, str(cal_split))
        split_source = f"file {cal_split}"
    if cal_rows.size < MIN_CAL_ROWS:
        where = cal_split if cal_split is not None else f"the seeded split of {n} rows"
        raise InputError(f"{where}: cal split has {cal_rows.size} rows; fitting a temperature needs at least {MIN_CAL_ROWS}")

    # ---- per-arm metrics on the full evaluated set (raw probabilities)
    probs = {name: M.softmax(p.logits) for name, p in preds.items()}
    teacher_probs = probs.get(TEACHER)
    values = {name: M.row_values(probs[name], labels, teacher_probs) for name in preds}  # per row, computed once
    arm_results = {
        name: _arm_metrics(values[name], probs[name], row_tiers, tier_labels, k, bins, thresholds, sla_target)
        for name in preds
    }

    # ---- temperature scaling: fit on cal, judge raw vs scaled on eval
    calibration = {}
    scaled_eval = {}  # name → temperature-scaled probabilities on the eval half
    eval_teacher = None if teacher_probs is None else teacher_probs[eval_rows]
    for name in calibrated:
        scaler = TemperatureScaler(optimizer=optimizer).fit(preds[name].logits[cal_rows], labels[cal_rows])
        if scaler.bound_warning():
            warnings.append(f"{name}: {scaler.bound_warning()}")
        scaled_probs = scaled_eval[name] = scaler.predict_proba(preds[name].logits[eval_rows])
        scaled = M.row_values(scaled_probs, labels[eval_rows], eval_teacher)
        calibration[name] = {
            "temperature": scaler.temperature_,
            "temperature_at_bound": scaler.at_bound_,
            "optimizer": optimizer,
            "fit_split": "cal",
            "eval_split": "eval",
            "n_cal": int(cal_rows.size),
            "n_eval": int(eval_rows.size),
            "nll_cal_before": scaler.nll_before_,
            "nll_cal_after": scaler.nll_after_,
            "eval": {
                "raw": _split_metrics(values[name], eval_rows, row_tiers, tier_labels, k, bins),
                "scaled": _split_metrics(scaled, None, row_tiers[eval_rows], tier_labels, k, bins),
            },
        }
        # A "+T" deployment thresholds softmax(z / T): its coverage, on rows the temperature never saw.
        calibration[name]["eval"]["scaled"]["coverage"] = coverage_table(scaled_probs, labels[eval_rows], thresholds)
        calibration[name]["eval"]["scaled"]["threshold_search"] = threshold_search(
            scaled_probs, labels[eval_rows], thresholds, sla_target)

    # ---- paired bootstrap of every arm against the baseline
    bootstrap = paired_bootstrap(
        probs, labels, row_tiers, baseline=baseline, metrics=METRICS, n_resamples=n_resamples, seed=seed, bins=bins, progress=progress
    )
    # Paired CIs between every two deployment candidates, so the report never decides between two
    # recipes on a point estimate within noise: F1 on all rows (T-scaling leaves the argmax alone),
    # ECE and NLL raw and + T on the eval half (the rows the candidates are compared on).
    eval_candidates = {name: probs[name][eval_rows] for name in calibrated}
    eval_candidates.update({f"{name}+T": scaled_eval[name] for name in calibrated})
    candidate_bootstrap = {
        "f1": pairwise_bootstrap(probs, labels, row_tiers, metrics=("macro_f1",), n_resamples=n_resamples,
                                 seed=seed, bins=bins),
        "calibration": pairwise_bootstrap(eval_candidates, labels[eval_rows], row_tiers[eval_rows],
                                          metrics=("ece", "nll"), groups=("overall",), n_resamples=n_resamples,
                                          seed=seed, bins=bins),
    }

    # ---- transfer tests and derived tables
    meta = {name: p.meta for name, p in preds.items()}
    result = {
        "schema_version": SCHEMA_VERSION,
        "tool_version": distillab.__version__,
        "settings": {
            "baseline": baseline,
            "distilled": distilled,
            "teacher": teacher is not None,
            "calibrate": calibrated,
            # Cut points only matter when tiers are computed from counts, not read from a file.
            "tier_cutoffs": None if tier_thresholds is not None or tier_source == "file" else list(tier_cutoffs),
            "tier_thresholds": None if tier_thresholds is None or tier_source == "file" else list(tier_thresholds),
            # Only when the cut-offs were chosen from the class count (the course's 20,60 leave no tail).
            **({"tier_cutoffs_chosen": cutoffs_note}
               if cutoffs_note and tier_thresholds is None and tier_source != "file" else {}),
            "train_counts": None if train_counts is None or not isinstance(train_counts, (str, os.PathLike)) else str(train_counts),
            "bins": bins,
            "n_resamples": n_resamples,
            "seed": seed,
            "bootstrap_metrics": list(METRICS),
            "bootstrap_overall": "all rows, drawn from the same stream after head, mid, tail",
            "thresholds": [float(t) for t in thresholds],
            "sla": sla_target,
            "cal_split": split_source,
            "calibration_optimizer": optimizer,
            "classes": classes_source,
            "reference_score": reference_score,
            "softmax": "float64, max-subtracted (course: float32)",
            "preds": "argmax of logits (first index on ties)",
        },
        "inputs": {name: _input_record(p) for name, p in preds.items()},
        "alignment": alignment,
        "warnings": warnings + _ties_warnings(preds),
        "n": n,
        "num_classes": k,
        "classes": class_names,
        "tier_source": tier_source,
        "tiers": {
            tier: {
                "classes": np.flatnonzero(class_tiers == tier).tolist(),
                "classes_evaluated": np.unique(labels[row_tiers == tier]).tolist(),
                "n": int((row_tiers == tier).sum()),
            }
            for tier in TIERS
        },
        "tier_support": tier_support(counts, class_tiers, class_names),
        "arms": arm_results,
        "bootstrap": bootstrap,
        "candidate_bootstrap": candidate_bootstrap,
        "calibration": calibration,
        "transfer_tests": {
            "test_a": transfer.run_test_a(arm_results, baseline, TEACHER),
            "test_b": None if distilled is None else transfer.run_test_b(
                baseline,
                distilled,
                calibration[baseline]["eval"]["raw"]["overall"],
                calibration[baseline]["eval"]["scaled"]["overall"],
                M.summarize(values[distilled], k, eval_rows, bins=bins),
            ),
        },
        "per_class_delta_f1": transfer.per_class_delta_f1(arm_results, baseline),
        "grid": transfer.grid_table(arm_results, meta),
        "noise_floor": None if distilled is None else transfer.noise_floor(bootstrap, distilled),
        "lift_table": transfer.lift_table(
            reference_score,
            arm_results[baseline]["overall"]["macro_f1"],
            None if distilled is None else arm_results[distilled]["overall"]["macro_f1"],
        ),
    }
    if out is not None:
        from distillab.audit.markdown import render

        # Rendered before anything is written, then both files land together or not at all.
        texts = {"audit.json": json_text(result), "audit.md": render(result)}
        with atomic_dir(out) as folder:
            for name, text in texts.items():
                (folder / name).write_text(text, encoding="utf-8")
    for warning in result["warnings"]:
        print(f"distillab audit: warning: {warning}", file=sys.stderr)
    return result


def _check_settings(
    bins: int, n_resamples: int, seed: int, thresholds: Sequence[float], sla_target: float,
    reference_score: float | None, optimizer: str,
) -> None:
    if not 1 <= bins <= MAX_BINS:
        raise InputError(f"--bins must be in [1, {MAX_BINS}], got {bins}")
    if not 1 <= n_resamples <= MAX_RESAMPLES:
        raise InputError(f"--n-resamples must be in [1, {MAX_RESAMPLES}], got {n_resamples}")
    if not 0 <= seed < 2**32:  # RandomState's range; checked here, before any file is read
        raise InputError(f"--seed must be in [0, 2**32), got {seed}")
    if not thresholds or any(not 0 <= t <= 1 for t in thresholds):
        raise InputError(f"--thresholds must be probabilities in [0, 1], got {list(thresholds)}")
    if not 0 < sla_target <= 1:
        raise InputError(f"--sla must be in (0, 1], got {sla_target}")
    if reference_score is not None and not 0 <= reference_score <= 1:  # a macro-F1; NaN fails too
        raise InputError(f"--reference-score must be a macro-F1 in [0, 1], got {reference_score}")
    if optimizer not in OPTIMIZERS:
        raise InputError(f"--optimizer must be {' or '.join(OPTIMIZERS)}, got {optimizer!r}")


def _load(source: PredictionsLike) -> Predictions:
    return source if isinstance(source, Predictions) else load_predictions(source)


def _where(p: Predictions) -> str:
    return str(p.path) if p.path is not None else "predictions"


def _align(preds: dict[str, Predictions]) -> tuple[dict[str, Predictions], dict[str, str]]:
    """Reorder every input to the first one's rows: by ``ids`` when all have them, else by position.

    Either way the labels must then agree row for row, so a shuffled file without ids is caught.
    Returns the aligned inputs and how each was aligned ("ids" or "row-position").
    """
    names = list(preds)
    ref = preds[names[0]]
    by_id = all(p.ids is not None for p in preds.values())
    aligned = {names[0]: ref}
    for name in names[1:]:
        p = preds[name]
        if p.num_classes != ref.num_classes:
            raise InputError(f"{_where(p)}: has {p.num_classes} classes but {_where(ref)} has {ref.num_classes}")
        if p.n != ref.n:
            raise InputError(f"{_where(p)}: has {p.n} rows but {_where(ref)} has {ref.n}; every arm must cover the same rows")
        if by_id:
            position = {row_id: i for i, row_id in enumerate(p.ids.tolist())}
            missing = [row_id for row_id in ref.ids.tolist() if row_id not in position]
            if missing:
                raise InputError(f"{_where(p)}: row id {missing[0]!r} of {_where(ref)} is missing ({len(missing)} missing)")
            p = p.take(np.array([position[row_id] for row_id in ref.ids.tolist()]))
        differ = np.flatnonzero(p.labels != ref.labels)
        if differ.size:
            row = int(differ[0])
            how = "by id" if by_id else "by row order (not every file has 'ids')"
            raise InputError(
                f"{_where(p)}: label at row {row} is {int(p.labels[row])} but {_where(ref)} has {int(ref.labels[row])} "
                f"when aligned {how} ({differ.size} rows differ)"
            )
        aligned[name] = p
    return aligned, dict.fromkeys(names, "ids" if by_id else "row-position")


def _alignment_warnings(preds: dict[str, Predictions], alignment: dict[str, str]) -> list[str]:
    """Files with ``ids`` matched by position because another file has none: the user expected ids to count."""
    without = [_where(p) for p in preds.values() if p.ids is None]
    if "ids" in alignment.values() or len(without) == len(preds):
        return []  # all by id, or no file has ids (the course's layout): nothing was ignored
    with_ids = [_where(p) for p in preds.values() if p.ids is not None]
    return [
        f"rows were matched by position, not by 'ids': {', '.join(without)} {'has' if len(without) == 1 else 'have'} "
        f"no 'ids' (but {', '.join(with_ids)} {'does' if len(with_ids) == 1 else 'do'}); the audit is right only if "
        "every file lists the same rows in the same order; give every file 'ids' to align by id"
    ]


def _class_names(classes, preds: dict[str, Predictions], k: int) -> tuple[list[str], str]:
    if classes is not None:
        if isinstance(classes, (str, os.PathLike)):
            data = read_json(classes)
            names = data.get("classes") if isinstance(data, dict) else data
            source = str(classes)
        else:
            names, source = list(classes), "argument"
        if not isinstance(names, list) or not all(isinstance(c, str) for c in names):
            raise InputError(f"{source}: expected a JSON list of class names (or {{\"classes\": [...]}})")
        if len(names) != k:
            raise InputError(f"{source}: lists {len(names)} classes but the predictions have {k}")
        return names, source
    for p in preds.values():
        names = p.meta.get("classes")
        if isinstance(names, list) and len(names) == k:
            return [str(c) for c in names], f"sidecar of {_where(p)}"
    return [str(i) for i in range(k)], "class ids (no names given)"


def _tiers_from_files(preds: dict[str, Predictions], labels: np.ndarray, k: int) -> np.ndarray:
    """Per-class tiers from per-row ``tiers`` arrays; all files that carry them must agree."""
    with_tiers = [p for p in preds.values() if p.tiers is not None]
    first = with_tiers[0]
    for p in with_tiers[1:]:
        differ = np.flatnonzero(p.tiers != first.tiers)
        if differ.size:
            raise InputError(f"{_where(p)}: 'tiers' at row {int(differ[0])} differs from {_where(first)}")
    class_tiers = np.full(k, "", dtype="<U4")  # "" = class absent from the evaluated rows: no tier
    for c in np.unique(labels):
        found = np.unique(first.tiers[labels == c])
        if found.size > 1:
            raise InputError(f"{_where(first)}: class {int(c)} has rows in tiers {', '.join(found)}; a class belongs to one tier")
        class_tiers[c] = found[0]
    return class_tiers


def _split_metrics(values: dict, rows: np.ndarray | None, row_tiers: np.ndarray, tier_labels: dict, k: int, bins: int) -> dict:
    """Overall and per-tier metrics of one arm on ``rows`` (None = all) of its per-row values.

    ``tier_labels``: each tier's label set from the full evaluated set, whatever ``rows`` holds.
    """
    v = values if rows is None else {key: arr[rows] for key, arr in values.items()}
    tiers_here = row_tiers if rows is None else row_tiers[rows]
    tiers = {tier: M.summarize(v, k, tiers_here == tier, label_set=tier_labels[tier], bins=bins) for tier in TIERS}
    return {
        "overall": M.summarize(v, k, bins=bins),
        "tiers": tiers,
        "reliability": M.reliability_from(v["confidence"], v["correct"], bins),
    }


def _arm_metrics(values: dict, probs: np.ndarray, row_tiers, tier_labels, k, bins, thresholds, sla_target) -> dict:
    result = _split_metrics(values, None, row_tiers, tier_labels, k, bins)
    table = coverage_table(probs, values["labels"], thresholds)
    result["per_class_f1"] = M.per_class_f1(values["labels"], values["preds"], k).tolist()
    result["coverage"] = table
    result["sla"] = sla(table, sla_target)
    result["threshold_search"] = threshold_search(probs, values["labels"], thresholds, sla_target)
    return result


def _input_record(p: Predictions) -> dict:
    """Where an input came from, its checksum (for "is this the file I think it is"), and its sidecar.

    ``preds_argmax_ties``: rows whose stored ``preds`` name another class tied at the top logit
    (the audit scores argmax, first index); None when the file has no ``preds``.
    """
    has_file = p.path is not None and Path(p.path).exists()
    return {
        "path": None if p.path is None else str(p.path),
        "sha256": sha256_file(p.path) if has_file else None,
        "meta": p.meta,
        "preds_argmax_ties": p.preds_ties,
    }


def _ties_warnings(preds: dict[str, Predictions]) -> list[str]:
    return [
        f"{_where(p)}: {p.preds_ties} rows' stored 'preds' name a class tied at the top logit other than argmax's "
        "first index (fp16 ties); the audit scores argmax, so its numbers can differ there from ones computed on 'preds'"
        for p in preds.values() if p.preds_ties
    ]
