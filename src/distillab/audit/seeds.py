"""Seed-to-seed variance: the same arms trained with several seeds, compared with the baseline seed by seed.

The paired bootstrap (:mod:`.bootstrap`) measures *test-sample* noise: which rows happen to be in
the evaluation split. It says nothing about *training* noise: another seed (initialisation,
dropout, data order) gives another student, and published replications find many distillation
gains within that noise. Here, for every arm trained with seeds s_1..s_n and every metric of the
audit (accuracy, macro-F1, ECE, NLL; overall and per tier, defined exactly as in ``audit.json``):

- the per-seed values, their mean and their sample standard deviation (ddof 1; null for one seed);
- the seed-paired comparison with the baseline arm: Δ_s = metric(arm, s) − metric(baseline, s),
  the two trained with the same seed (hence the same data order), the mean Δ and its 95% CI over
  seeds, mean ± t_{0.975, n−1} · sd(Δ) / √n (Student t with n − 1 degrees of freedom). One seed
  gives no CI, and the record says so.

Deterministic arms (reference baselines such as TF-IDF + a linear model) are not retrained per
seed: passed as ``fixed``, they are scored once and that value stands for every seed.

``distillab run`` writes the result as ``audit/seeds.json`` when it trains two or more seeds.
"""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import numpy as np

from distillab.audit import metrics as M
from distillab.audit.bootstrap import LOWER_IS_BETTER
from distillab.data.tiers import TIERS
from distillab.errors import InputError
from distillab.io import Predictions, load_predictions

SCHEMA_VERSION = 1
SEED_METRICS = ("accuracy", "macro_f1", "ece", "nll")
SCOPES = ("overall", *TIERS)
CONFIDENCE = 0.95
NOT_SIGNIFICANT = "cannot be distinguished from zero across these seeds"
ONE_SEED = "one seed: no CI over seeds (needs two or more)"

PredictionsLike = str | os.PathLike | Predictions


def seed_variance(
    per_seed: Mapping[int, Mapping[str, PredictionsLike]],
    baseline: str,
    tiers: Mapping[str, Sequence[int]],
    bins: int = M.DEFAULT_BINS,
    fixed: Mapping[str, PredictionsLike] | None = None,
) -> dict:
    """Per-seed metrics, mean ± sd over seeds and the seed-paired Δ vs ``baseline`` with its t CI.

    ``per_seed``: seed → {arm: predictions on the evaluation split}; every seed names the same
    arms, in the order the result lists them. ``fixed``: deterministic arms scored once, their value
    repeated for every seed (the baseline may be one). ``tiers``: tier → class ids (``audit.json``'s
    ``tiers[t]["classes"]``); a row's tier is its true label's, and a tier's macro-F1 averages the
    tier's classes present in the evaluated labels, as in the audit.
    """
    seeds = [int(s) for s in per_seed]
    if not seeds:
        raise InputError("seed variance: no seeds given")
    if len(set(seeds)) != len(seeds):
        raise InputError(f"seed variance: a seed is listed twice in {seeds}")
    fixed = dict(fixed or {})
    arms = list(next(iter(per_seed.values())))
    for seed, files in per_seed.items():
        if list(files) != arms:
            raise InputError(f"seed variance: seed {seed} has arms {list(files)}, seed {seeds[0]} has {arms}; "
                             "every seed must list the same arms")
    both = sorted(set(arms) & set(fixed))
    if both:
        raise InputError(f"seed variance: {both[0]!r} is both trained per seed and fixed")
    names = arms + list(fixed)
    if baseline not in names:
        raise InputError(f"seed variance: the baseline {baseline!r} is not an arm (arms: {', '.join(names)})")

    # Every file, aligned to one reference's rows (by id when all have ids), labels checked row for row.
    from distillab.audit.core import _align

    flat = {(arm, seed): _load(src) for seed, files in zip(seeds, per_seed.values()) for arm, src in files.items()}
    flat.update({(arm, None): _load(src) for arm, src in fixed.items()})
    keys = list(flat)
    aligned, _ = _align({i: flat[key] for i, key in enumerate(keys)})
    preds = {key: aligned[i] for i, key in enumerate(keys)}
    reference = aligned[0]
    labels, k = reference.labels, reference.num_classes

    class_tiers = np.full(k, "", dtype="<U4")
    for tier in TIERS:
        classes = np.asarray(list(tiers.get(tier, [])), dtype=np.int64)
        if classes.size and (classes.min() < 0 or classes.max() >= k):
            raise InputError(f"seed variance: tier {tier!r} names a class outside [0, {k})")
        class_tiers[classes] = tier
    row_tiers = class_tiers[labels]
    tier_labels = {tier: np.unique(labels[row_tiers == tier]) for tier in TIERS}

    def scores(p: Predictions) -> dict:
        values = M.row_values(M.softmax(p.logits), labels)
        out = {"overall": M.summarize(values, k, bins=bins)}
        for tier in TIERS:
            out[tier] = M.summarize(values, k, row_tiers == tier, label_set=tier_labels[tier], bins=bins)
        return {scope: {m: out[scope][m] for m in SEED_METRICS} for scope in SCOPES}

    per_arm: dict[str, list[dict]] = {}
    for arm in arms:
        per_arm[arm] = [scores(preds[(arm, seed)]) for seed in seeds]
    for arm in fixed:
        once = scores(preds[(arm, None)])
        per_arm[arm] = [once] * len(seeds)

    result_arms = {}
    for arm in names:
        result_arms[arm] = {
            "fixed": arm in fixed,
            "values": {scope: {metric: _summary([s[scope][metric] for s in per_arm[arm]]) for metric in SEED_METRICS}
                       for scope in SCOPES},
        }
    paired = []
    for arm in names:
        if arm == baseline:
            continue
        for scope in SCOPES:
            for metric in SEED_METRICS:
                paired.append(_paired(arm, baseline, scope, metric,
                                      [a[scope][metric] for a in per_arm[arm]],
                                      [b[scope][metric] for b in per_arm[baseline]]))
    return {
        "schema_version": SCHEMA_VERSION,
        "seeds": seeds,
        "primary_seed": seeds[0],
        "baseline": baseline,
        "n": int(labels.shape[0]),
        "num_classes": k,
        "bins": bins,
        "metrics": list(SEED_METRICS),
        "scopes": list(SCOPES),
        "tiers": {tier: {"classes": np.flatnonzero(class_tiers == tier).tolist(),
                         "n": int((row_tiers == tier).sum())} for tier in TIERS},
        "confidence": CONFIDENCE,
        "ci_method": "mean Δ ± t(0.975, n−1) · sd(Δ) / √n over seeds (Student t, n − 1 degrees of freedom), "
                     "Δ_s = metric(arm, seed s) − metric(baseline, seed s); sd with ddof 1",
        "fixed_arms": list(fixed),
        "arms": result_arms,
        "paired": paired,
    }


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float, float] | None:
    """(mean, sd, ci_low, ci_high) of ``values`` with a Student-t interval; None for fewer than two values."""
    from scipy.stats import t

    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return None
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def _summary(values: list) -> dict:
    """Per-seed values, mean and sample sd (null when a value is missing, sd null for one seed)."""
    if any(v is None or not math.isfinite(v) for v in values):
        return {"per_seed": values, "mean": None, "sd": None}
    x = np.asarray(values, dtype=np.float64)
    return {"per_seed": [float(v) for v in values], "mean": float(x.mean()),
            "sd": float(x.std(ddof=1)) if x.shape[0] > 1 else None}


def _paired(arm: str, baseline: str, scope: str, metric: str, arm_values: list, base_values: list) -> dict:
    record = {"arm": arm, "baseline": baseline, "tier": scope, "metric": metric,
              "better": "lower" if metric in LOWER_IS_BETTER else "higher"}
    if any(v is None or not math.isfinite(v) for v in arm_values + base_values):
        return {**record, "deltas": None, "n_seeds": len(arm_values), "mean": None, "sd": None, "df": None,
                "t_quantile": None, "ci_low": None, "ci_high": None, "excludes_zero": None,
                "verdict": "not computed: the metric is undefined for a seed (no rows in this tier)"}
    deltas = [float(a) - float(b) for a, b in zip(arm_values, base_values)]
    n = len(deltas)
    interval = t_interval(deltas)
    if interval is None:
        return {**record, "deltas": deltas, "n_seeds": n, "mean": deltas[0], "sd": None, "df": 0,
                "t_quantile": None, "ci_low": None, "ci_high": None, "excludes_zero": None, "verdict": ONE_SEED}
    from scipy.stats import t

    mean, sd, low, high = interval
    excludes = bool(low > 0 or high < 0)
    return {**record, "deltas": deltas, "n_seeds": n, "mean": mean, "sd": sd, "df": n - 1,
            "t_quantile": float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)), "ci_low": low, "ci_high": high,
            "excludes_zero": excludes, "verdict": _verdict(low, high, metric)}


def _verdict(low: float, high: float, metric: str) -> str:
    if low > 0 or high < 0:
        higher = low > 0
        better = higher != (metric in LOWER_IS_BETTER)
        return f"{'improvement' if better else 'degradation'} beyond seed noise"
    return NOT_SIGNIFICANT


def _load(source: PredictionsLike) -> Predictions:
    return source if isinstance(source, Predictions) else load_predictions(source)
