"""Paired bootstrap of metric differences (arm − baseline), per tier and overall, vectorised.

The course profile, reproduced draw for draw: one ``RandomState(seed)`` stream; tiers in the order
head, mid, tail; per tier ``n_resamples`` draws of ``rng.choice(tier_rows, size=len(tier_rows),
replace=True)``; every arm is scored on the same rows (paired); report the median and
``np.quantile`` 0.025/0.975 of the differences. Our addition: after the tail, the same stream
draws ``n_resamples`` resamples of all rows for the "overall" group, so the tier results stay
identical to the course's whatever else is asked for.

Speed: a resample is a vector of row multiplicities w (how often each row was drawn). Every
statistic the metrics need is a sum over rows weighted by w: per-class TP / support / predicted
counts, per-bin counts and sums, the number correct, the summed NLL. Stacking those per-row
indicator columns into a sparse matrix A [C, m] turns all of them, for a chunk of resamples at
once, into one sparse-dense product A @ W. Counts come out as exact integers in float64, so
macro-F1 and accuracy equal sklearn's loop bit for bit; ECE and NLL agree to rounding (~1e-15).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from scipy import sparse

from distillab.audit.metrics import DEFAULT_BINS, confidence_bins, f1_from_counts, nll_per_row
from distillab.data.tiers import TIERS

METRICS = ("macro_f1", "accuracy", "ece", "nll")
LOWER_IS_BETTER = frozenset({"ece", "nll"})
GROUPS = (*TIERS, "overall")
CI_QUANTILES = (0.025, 0.975)
NOT_SIGNIFICANT = "cannot be distinguished from zero at this sample size"


def verdict(ci_low: float, ci_high: float, metric: str) -> str:
    """'significant …' only when the CI excludes 0; never 'no effect' (absence of evidence)."""
    if ci_low > 0 or ci_high < 0:
        higher = ci_low > 0
        return "significant improvement" if higher != (metric in LOWER_IS_BETTER) else "significant degradation"
    return NOT_SIGNIFICANT


def draw_weights(
    rng: np.random.RandomState, m: int, n_resamples: int, chunk: int
) -> Iterator[np.ndarray]:
    """Row multiplicities ``[m, r]`` for successive chunks of resamples of m rows.

    The course draws each resample as ``rng.choice(rows, size=m, replace=True)``, which is
    ``rows[rng.randint(0, m, size=m)]``; legacy ``randint`` consumes the stream value by value, so
    one ``randint(0, m, size=(r, m))`` gives the same r resamples in order (tests check this
    against the course loop), just without r Python calls and gathers.
    """
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        drawn = rng.randint(0, m, size=(r, m))  # [r, m] positions within the group
        # Flat index (row, resample) in an [m, r] layout; bincount counts multiplicities.
        flat = (drawn * r + np.arange(r)[:, None]).ravel()
        yield np.bincount(flat, minlength=m * r).reshape(m, r).astype(np.float64)


class _ArmColumns:
    """Per-row indicator columns of one arm on one group, as a sparse [C, m] matrix.

    Only the blocks the requested metrics need are built (the product costs one multiply-add per
    stored entry per resample): macro_f1 → predicted count and TP per label; ece → count,
    confidence sum and correct sum per bin; accuracy → number correct; nll → NLL sum.
    """

    def __init__(self, probs, labels, label_set, bins, metrics):
        m = labels.shape[0]
        n_labels = label_set.shape[0]
        preds = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        correct = (preds == labels).astype(np.float64)
        column_of = np.full(probs.shape[1], -1)
        column_of[label_set] = np.arange(n_labels)
        rows_idx = np.arange(m)
        blocks, self.offsets, width = [], {}, 0

        def add(name, size, cols, values, rows=rows_idx):
            nonlocal width
            blocks.append((width + cols, rows, values))
            self.offsets[name] = (width, width + size)
            width += size

        if "macro_f1" in metrics:
            pred_col = column_of[preds]
            has_pred = pred_col >= 0  # predictions outside the label set are nobody's false positive
            add("predicted", n_labels, pred_col[has_pred], np.ones(int(has_pred.sum())), rows_idx[has_pred])
            add("tp", n_labels, column_of[labels], correct)
        if "ece" in metrics:
            b = confidence_bins(conf, bins)
            add("bin_count", bins, b, np.ones(m))
            add("bin_conf", bins, b, conf)
            add("bin_correct", bins, b, correct)
        if "accuracy" in metrics:
            add("correct", 1, np.zeros(m, dtype=np.int64), correct)
        if "nll" in metrics:
            add("nll", 1, np.zeros(m, dtype=np.int64), nll_per_row(probs, labels))
        r_idx, c_idx, vals = (np.concatenate(parts) for parts in zip(*blocks))
        self.matrix = sparse.csr_matrix((vals, (r_idx, c_idx)), shape=(width, m))
        self.metrics, self.m = tuple(metrics), m

    def statistics(self, weights: np.ndarray, support: np.ndarray | None, overall: bool) -> dict[str, np.ndarray]:
        """Metric values ``[r]`` for each resample (columns of ``weights``)."""
        m = self.m
        sums = np.ascontiguousarray((self.matrix @ weights).T)  # [r, C]

        def block(name):
            lo, hi = self.offsets[name]
            return sums[:, lo:hi]

        out = {}
        if "macro_f1" in self.metrics:
            predicted = block("predicted")
            f1 = f1_from_counts(block("tp"), support, predicted)  # [r, L], C-contiguous: rows sum as sklearn's mean
            if overall:
                # sklearn default: average over labels present in this resample's y_true ∪ y_pred.
                present = (support + predicted) > 0
                out["macro_f1"] = np.array([row[mask].mean() for row, mask in zip(f1, present)])
            else:
                out["macro_f1"] = f1.mean(axis=1)
        if "ece" in self.metrics:
            count = block("bin_count")
            safe = np.maximum(count, 1.0)  # empty bins contribute 0 either way
            out["ece"] = np.sum(count / m * np.abs(block("bin_correct") / safe - block("bin_conf") / safe), axis=1)
        if "accuracy" in self.metrics:
            out["accuracy"] = block("correct")[:, 0] / m
        if "nll" in self.metrics:
            out["nll"] = block("nll")[:, 0] / m
        return out


def paired_bootstrap(
    probs: dict[str, np.ndarray],
    labels: np.ndarray,
    row_tiers: np.ndarray,
    baseline: str,
    arms: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    n_resamples: int = 1000,
    seed: int = 42,
    bins: int = DEFAULT_BINS,
    chunk: int = 125,
    progress: bool = False,
) -> list[dict]:
    """Bootstrap records ``{arm, baseline, tier, metric, median, ci_low, ci_high, ci_width, ...}``.

    ``probs`` maps arm name to probabilities ``[n, K]``; ``arms`` (default: all but the baseline)
    are compared with ``baseline``. Tier label sets are fixed from the full evaluated set, so a
    tier class absent from a resample contributes F1 0, as in the course.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown bootstrap metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    arms = [a for a in probs if a != baseline] if arms is None else list(arms)
    if not arms:
        return []
    records = []
    for group, values in _resampled(probs, labels, row_tiers, [baseline, *arms], metrics, n_resamples, seed, bins,
                                    chunk, progress):
        for a in arms:
            for k in metrics:
                records.append(_record(a, baseline, group, k, values[a][k] - values[baseline][k], seed))
    return records


def _resampled(probs, labels, row_tiers, names, metrics, n_resamples, seed, bins, chunk, progress=False,
               groups=GROUPS):
    """``(group, {arm: {metric: values [n_resamples]}})`` per group, every arm scored on the same resamples.

    One ``RandomState(seed)`` stream over ``groups`` in order (default head, mid, tail, overall: the
    course's draws, then ours), so every caller with the same seed and groups sees the same resamples.
    """
    num_classes = probs[names[0]].shape[1]
    rng = np.random.RandomState(seed)
    rows_of = {t: np.flatnonzero(row_tiers == t) for t in TIERS} | {"overall": np.arange(labels.shape[0])}
    n_chunks = -(-n_resamples // chunk)
    bar = _progress(len(groups) * n_chunks, progress)
    for group in groups:
        rows = rows_of[group]
        if rows.size == 0:
            raise ValueError(f"tier '{group}' has no rows")  # callers validate tiers first
        y = labels[rows]
        overall = group == "overall"
        label_set = np.arange(num_classes) if overall else np.unique(y)
        columns = {a: _ArmColumns(probs[a][rows], y, label_set, bins, metrics) for a in names}
        position = np.full(num_classes, -1)
        position[label_set] = np.arange(label_set.shape[0])
        truth = sparse.csr_matrix(
            (np.ones(rows.size), (position[y], np.arange(rows.size))), shape=(label_set.shape[0], rows.size)
        )
        values = {a: {k: [] for k in metrics} for a in names}
        for weights in draw_weights(rng, rows.size, n_resamples, chunk):
            support = np.ascontiguousarray((truth @ weights).T) if "macro_f1" in metrics else None  # [r, L]
            for a in names:
                stats = columns[a].statistics(weights, support, overall)
                for k in metrics:
                    values[a][k].append(stats[k])
            bar.update(1)
        yield group, {a: {k: np.concatenate(v) for k, v in per.items()} for a, per in values.items()}
    bar.close()


def pairwise_bootstrap(
    probs: dict[str, np.ndarray],
    labels: np.ndarray,
    row_tiers: np.ndarray,
    metrics: Sequence[str] = METRICS,
    groups: Sequence[str] = GROUPS,
    n_resamples: int = 1000,
    seed: int = 42,
    bins: int = DEFAULT_BINS,
    chunk: int = 125,
) -> dict:
    """Paired CIs between every two candidates, so a decision between any two can be read against noise.

    ``{"candidates": [names], "groups": {group: {metric: {"median"|"ci_low"|"ci_high": [[i − j]]}}}}``,
    entry ``[i][j]`` the statistic of candidate i − candidate j on the same resampled rows (null on the
    diagonal). With the same seed and groups as :func:`paired_bootstrap` the resamples are the same,
    so the (arm, baseline) entries equal its records.
    """
    names = list(probs)
    out: dict = {"candidates": names, "n_resamples": n_resamples, "seed": seed, "groups": {}}
    for group, values in _resampled(probs, labels, row_tiers, names, metrics, n_resamples, seed, bins, chunk,
                                    groups=tuple(groups)):
        block = out["groups"][group] = {}
        for k in metrics:
            stats = {"median": [], "ci_low": [], "ci_high": []}
            for a in names:
                row = {key: [] for key in stats}
                for b in names:
                    if a == b:
                        for key in stats:
                            row[key].append(None)
                        continue
                    deltas = values[a][k] - values[b][k]
                    row["median"].append(float(np.median(deltas)))
                    lo, hi = (float(np.quantile(deltas, q)) for q in CI_QUANTILES)
                    row["ci_low"].append(lo)
                    row["ci_high"].append(hi)
                for key in stats:
                    stats[key].append(row[key])
            block[k] = stats
    return out


def _record(arm: str, baseline: str, group: str, metric: str, deltas: np.ndarray, seed: int) -> dict:
    low, high = (float(np.quantile(deltas, q)) for q in CI_QUANTILES)
    return {
        "arm": arm,
        "baseline": baseline,
        "tier": group,
        "metric": metric,
        "median": float(np.median(deltas)),
        "ci_low": low,
        "ci_high": high,
        "ci_width": high - low,
        "excludes_zero": bool(low > 0 or high < 0),
        "verdict": verdict(low, high, metric),
        "better": "lower" if metric in LOWER_IS_BETTER else "higher",
        "n_resamples": int(deltas.shape[0]),
        "seed": seed,
    }


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm  # light, but only needed when a bar is shown

    return tqdm(total=total, desc="bootstrap", unit="chunk", disable=not enabled, leave=False)
