"""Audit of causal-LM students on held-out text: what each student kept of the teacher, per token-frequency tier.

Every target token of every held-out sequence (token t+1 given tokens <= t) is scored by every model:
NLL (perplexity = exp of the mean), top-1 accuracy, top-1 confidence for a 15-bin ECE, and, against
the teacher, top-1 agreement, KL(teacher || student) and Jensen-Shannon divergence, all from exact
float64 log-softmaxes over the whole vocabulary (no probability clipping, unlike the classification
audit's course-compatible JS).

Tiers. Target tokens are tiered by how often they were a target in the training corpus: sort the
vocabulary by count, and call head the tokens whose count reaches that of the token at which the
cumulative training target mass first reaches 50%, mid those reaching the one at 90%, tail the rest,
unseen tokens included. The tier is a function of the count alone, so tied tokens share a tier
(head may then hold a little more than 50% of the mass).

Uncertainty. Tokens of one sequence are not independent, so the paired bootstrap resamples
*sequences*: ``RandomState(seed)`` draws ``n_resamples`` resamples of all sequences (the same
multiplicities as ``rng.choice(n, n)`` per resample, via :func:`distillab.audit.bootstrap.draw_weights`),
every arm and tier is scored on the same resamples, and a metric is a ratio of per-sequence sums
(sum of NLL over tier tokens / tier tokens), so a resample is one matrix product. Differences are
arm - baseline; CIs are the 2.5% / 97.5% quantiles. A resample in which a tier has no token is left
out of that tier's CI (counted in ``n_valid``). The same resamples also give, for every unordered pair
of students (the teacher excluded), arm - against for NLL and accuracy per tier (``pairs``: students in
the order baseline first, then as given; a later one is the arm, an earlier one what it is against, so
a pair with the baseline is exactly the corresponding baseline comparison).

Temperature. One T per model, fitted by minimising the mean NLL (safeguarded Newton on 1/T, within
the bounds of :mod:`distillab.calibrate.temperature`; see :func:`fit_temperature`) on the tokens of the calibration
half of the sequences (:func:`~distillab.calibrate.temperature.cal_eval_split`, seed 1041), then
ECE and NLL before and after T are reported on the other half. The calibration logits are the only
full-vocabulary arrays kept beyond one batch: stored as float16 after subtracting each token's max
logit (so the largest, most probable logits are stored most precisely and nothing overflows); peak
extra memory is about models x calibration tokens x vocabulary x 2 bytes (recorded in audit.json).
The change ECE_after - ECE_before gets a paired CI from ``n_resamples`` resamples of the evaluation-half
sequences (``RandomState(seed)``, the same draws for every model; both ECEs on each resample's tokens),
see :func:`calibration_bootstrap`.

Retention (student / teacher, higher is better, 1 = the teacher's level): accuracy retention
acc_s / acc_t and perplexity retention ppl_t / ppl_s = exp(NLL_t - NLL_s), each with a CI from the
same resamples.
"""

from __future__ import annotations

import contextlib
import itertools
import resource
from pathlib import Path
from typing import Iterator

import numpy as np

from distillab.audit.bootstrap import CI_QUANTILES, NOT_SIGNIFICANT, draw_weights
from distillab.audit.metrics import DEFAULT_BINS, confidence_bins, ece_from
from distillab.calibrate.temperature import MIN_CAL_ROWS, SPLIT_SEED, T_BOUNDS, cal_eval_split
from distillab.errors import InputError
from distillab.io import TIERS, write_json_atomic
from distillab.teacher.causal_lm import position_logits

TIER_MASS = (0.5, 0.9)  # cumulative training target mass where head ends and where mid ends
GROUPS = ("overall", *TIERS)
TEACHER_STATS = ("agreement", "kl", "js")
METRICS = ("nll", "perplexity", "accuracy", "ece", *TEACHER_STATS)
LOWER_IS_BETTER = frozenset({"nll", "perplexity", "ece", "kl", "js"})
PAIR_METRICS = ("nll", "accuracy")  # student - student differences (``pairs``)
TEACHER = "teacher"
STATS_CHUNK = 128  # tokens per float64 block: 128 x 49,152 x 8 B = 50 MB per array, ~5 alive at once
BOOT_CHUNK = 125


# --------------------------------------------------------------------------- tiers


def token_tiers(train_token_counts, vocab_size: int) -> tuple[np.ndarray, dict]:
    """Tier name per vocabulary id (``[V]`` str) and the rule's numbers (count thresholds, ids and mass per tier)."""
    counts = np.asarray(train_token_counts)
    if counts.ndim != 1 or counts.shape[0] != vocab_size:
        raise InputError(f"train_token_counts has shape {counts.shape}; expected one count per vocabulary id "
                         f"({vocab_size})")
    if not (np.issubdtype(counts.dtype, np.integer) or np.issubdtype(counts.dtype, np.floating)) \
            or not np.isfinite(counts).all() or (counts < 0).any():
        raise InputError("train_token_counts must be finite non-negative numbers")
    counts = counts.astype(np.float64)
    total = counts.sum()
    if total <= 0:
        raise InputError("train_token_counts are all zero; the tiers need the training corpus's target counts")
    ranked = np.sort(counts)[::-1]
    cumulative = np.cumsum(ranked) / total
    head_min, mid_min = (ranked[np.searchsorted(cumulative, share - 1e-12)] for share in TIER_MASS)
    tiers = np.full(vocab_size, "tail", dtype="<U4")
    tiers[counts >= mid_min] = "mid"
    tiers[counts >= head_min] = "head"
    info = {
        "rule": (f"head: count >= {head_min:g} (the token where the sorted training target mass reaches "
                 f"{TIER_MASS[0]:.0%}); mid: count >= {mid_min:g} (mass reaches {TIER_MASS[1]:.0%}); tail: the rest, "
                 "unseen tokens included; tied counts share a tier"),
        "head_min_count": float(head_min),
        "mid_min_count": float(mid_min),
        "vocab_ids": {t: int((tiers == t).sum()) for t in TIERS},
        "train_mass": {t: float(counts[tiers == t].sum() / total) for t in TIERS},
        "unseen_ids": int((counts == 0).sum()),
    }
    return tiers, info


# --------------------------------------------------------------------------- per-token statistics


def token_statistics(logits: dict, targets, teacher: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-token float64 statistics of every model's ``softmax(logits[name])`` (``[n, V]``) for ``targets`` ``[n]``.

    Every model gets ``nll`` (-log q_y), ``correct`` (argmax == target) and ``confidence`` (max q); with
    ``teacher`` (a key of ``logits``) the others also get ``agreement`` (same argmax), ``kl`` =
    KL(p || q) and ``js`` = JS(p, q) in nats. The teacher's log-softmax is computed once per block of
    :data:`STATS_CHUNK` tokens and shared; KL = Σ p log p - Σ p log q and JS = ½(Σ p log p + Σ q log q)
    - Σ m log m (m = (p + q) / 2) need no per-entry logarithm of a ratio, and float64 keeps the
    differences exact to ~1e-15 nats.
    """
    import torch

    targets = torch.as_tensor(targets, dtype=torch.long)
    parts: dict = {name: {} for name in logits}
    n = targets.shape[0]
    for start in range(0, n, STATS_CHUNK):
        y = targets[start:start + STATS_CHUNK]
        ref = None
        if teacher is not None:
            logp = torch.log_softmax(torch.as_tensor(logits[teacher][start:start + STATS_CHUNK]).to(torch.float64), -1)
            p = logp.exp()
            ref = (p, logp.argmax(dim=-1), torch.linalg.vecdot(p, logp))
            _add(parts[teacher], _own(logp, y))
            del logp
        for name, z in logits.items():
            if name == teacher:
                continue
            logq = torch.log_softmax(torch.as_tensor(z[start:start + STATS_CHUNK]).to(torch.float64), -1)
            block = _own(logq, y)
            if ref is not None:
                p, top_p, neg_hp = ref
                q = logq.exp()
                block["agreement"] = (top_p == logq.argmax(dim=-1)).double()
                block["kl"] = neg_hp - torch.linalg.vecdot(p, logq)
                neg_hq = torch.linalg.vecdot(q, logq)
                m = q.add_(p).mul_(0.5)
                block["js"] = 0.5 * (neg_hp + neg_hq) - torch.special.xlogy(m, m).sum(dim=-1)
            _add(parts[name], block)
    return {name: {k: np.concatenate(v) for k, v in per.items()} for name, per in parts.items()}


def _own(logq, y) -> dict:
    """A model's own per-token statistics from its log-probabilities."""
    top_logq, top = logq.max(dim=-1)
    return {"nll": -logq.gather(1, y[:, None].to(logq.device))[:, 0], "correct": (top == y.to(top.device)).double(),
            "confidence": top_logq.exp()}


def _add(parts: dict, block: dict) -> None:
    for key, value in block.items():
        parts.setdefault(key, []).append(value.cpu().numpy())


# --------------------------------------------------------------------------- temperature


def fit_temperature(blocks, targets) -> tuple[float, str | None]:
    """(T, bound hit or None) minimising the mean NLL of ``softmax(z / T)`` over stored logit blocks.

    ``blocks``: ``[n_i, V]`` tensors (any float dtype, e.g. the float16 store); ``targets``: the matching
    ``[n_i]`` target ids. With β = 1/T the mean NLL f(β) = mean(logsumexp(β z) - β z_y) is convex
    (f'' = mean Var_β[z] >= 0), so its minimiser within :data:`T_BOUNDS` is where f' = mean(E_β[z] - z_y)
    changes sign, or a bound. Newton steps on β kept inside a bracket that shrinks around that sign
    change (a step leaving it goes to the untried bound or bisects) need about six passes over the
    logits, each one exp per entry (float32, sums in float64), where a derivative-free search needs ~25.
    """
    lo, hi = 1.0 / T_BOUNDS[1], 1.0 / T_BOUNDS[0]
    tried, beta = set(), 1.0
    for _ in range(200):
        grad, curvature = _nll_slope(blocks, targets, beta)
        tried.add(beta)
        if grad > 0:
            hi = beta
        else:
            lo = beta
        step = beta - grad / curvature if curvature > 0 else float("nan")
        if lo < step < hi:
            nxt = step
        else:  # leaving the bracket (or no curvature): try the bound on that side once, else bisect in log space
            edge = lo if step <= lo else hi
            nxt = edge if edge in (1.0 / T_BOUNDS[1], 1.0 / T_BOUNDS[0]) and edge not in tried else float(np.sqrt(lo * hi))
        if abs(nxt - beta) <= 1e-6 * beta or hi <= lo * (1 + 1e-12):  # float32 sums: f' is exact to ~1e-7
            beta = nxt if lo <= nxt <= hi else beta
            break
        beta = nxt
    t = 1.0 / beta
    bound = "lower" if t <= T_BOUNDS[0] * (1 + 1e-9) else "upper" if t >= T_BOUNDS[1] * (1 - 1e-9) else None
    return t, bound


def _nll_slope(blocks, targets, beta: float) -> tuple[float, float]:
    """(f'(β), f''(β)) of the mean NLL at β = 1/T: mean(E_β[z] - z_y) and mean(Var_β[z]), one pass."""
    import torch

    grad = curvature = 0.0
    n = 0
    for block, y in zip(blocks, targets):
        for start in range(0, block.shape[0], STATS_CHUNK):
            z = block[start:start + STATS_CHUNK].to(torch.float32)
            z = z - z.max(dim=-1, keepdim=True).values  # E and Var are shift-invariant; exp(β z) <= 1
            e = torch.exp(z * beta)
            s0 = e.sum(dim=-1).double()
            s1 = torch.linalg.vecdot(e, z).double()
            s2 = torch.linalg.vecdot(e.mul_(z), z).double()
            mean = s1 / s0
            z_y = z.gather(1, torch.as_tensor(y[start:start + STATS_CHUNK], dtype=torch.long)[:, None])[:, 0].double()
            grad += float((mean - z_y).sum())
            curvature += float((s2 / s0 - mean * mean).clamp_min(0.0).sum())
            n += z.shape[0]
    return grad / n, curvature / n


# --------------------------------------------------------------------------- sums and bootstrap


def sequence_sums(stats: dict[str, np.ndarray], sequence_of: np.ndarray, n_sequences: int, bins: int,
                  mask: np.ndarray | None = None) -> np.ndarray:
    """Per-sequence sums ``[n_sequences, C]`` every metric is a ratio of (layout: :func:`_layout`).

    Columns: tokens, NLL, correct, then agreement / KL / JS when present, then per confidence bin the
    summed confidence and the summed correctness (ECE = Σ_b |Σ correct_b - Σ conf_b| / tokens).
    """
    keep = np.ones(sequence_of.shape[0], dtype=bool) if mask is None else mask
    seq = sequence_of[keep]
    columns = [np.bincount(seq, minlength=n_sequences).astype(np.float64)]
    for key in ("nll", "correct", *[k for k in TEACHER_STATS if k in stats]):
        columns.append(np.bincount(seq, weights=stats[key][keep], minlength=n_sequences))
    flat = seq * bins + confidence_bins(stats["confidence"][keep], bins)
    for key in ("confidence", "correct"):
        columns.append(np.bincount(flat, weights=stats[key][keep], minlength=n_sequences * bins).reshape(-1, bins))
    return np.column_stack(columns)


def metrics_from_sums(sums: np.ndarray, has_teacher: bool, bins: int) -> dict[str, np.ndarray]:
    """Metric values ``[r]`` from summed columns ``[r, C]``; a row with no token gives NaN."""
    tokens = sums[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"nll": sums[:, 1] / tokens, "accuracy": sums[:, 2] / tokens}
        out["perplexity"] = np.exp(out["nll"])
        at = 3
        if has_teacher:
            for key in TEACHER_STATS:
                out[key] = sums[:, at] / tokens
                at += 1
        conf, correct = sums[:, at:at + bins], sums[:, at + bins:at + 2 * bins]
        out["ece"] = np.abs(correct - conf).sum(axis=1) / tokens
    return out


def sequence_bootstrap(stats: dict[str, dict[str, np.ndarray]], sequence_of: np.ndarray, token_tier: np.ndarray,
                       n_sequences: int, baseline: str, n_resamples: int = 1000, seed: int = 0,
                       bins: int = DEFAULT_BINS, teacher: str | None = None) -> dict:
    """Point metrics, paired CIs of arm - baseline and retention CIs, resampling sequences.

    ``stats``: arm -> :func:`token_statistics` output over all target tokens (in one order, shared by
    ``sequence_of`` and ``token_tier``); ``teacher`` names the arm retention divides by (None: no retention).
    Returns ``{"metrics": {arm: {group: {...}}}, "bootstrap": [records], "pairs": [records],
    "retention": {arm: {group: {...}}}}``; ``pairs`` holds arm - against for :data:`PAIR_METRICS` for
    every unordered pair of arms other than ``teacher`` (see :func:`student_pairs`), on the same resamples.
    """
    masks = {"overall": None} | {t: token_tier == t for t in TIERS}
    sums = {a: {g: sequence_sums(s, sequence_of, n_sequences, bins, m) for g, m in masks.items()}
            for a, s in stats.items()}
    has = {a: all(k in s for k in TEACHER_STATS) for a, s in stats.items()}
    point = {a: {g: {k: float(v[0]) for k, v in metrics_from_sums(s.sum(axis=0, keepdims=True), has[a], bins).items()}
                 | {"tokens": int(s[:, 0].sum())} for g, s in per.items()} for a, per in sums.items()}
    values: dict = {a: {g: [] for g in GROUPS} for a in stats}
    for weights in draw_weights(np.random.RandomState(seed), n_sequences, n_resamples, BOOT_CHUNK):
        for a, per in sums.items():
            for g, s in per.items():
                values[a][g].append(metrics_from_sums(weights.T @ s, has[a], bins))
    values = {a: {g: {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} for g, chunks in per.items()}
              for a, per in values.items()}
    records = []
    for arm in stats:
        if arm in (baseline, teacher):
            continue
        for g in GROUPS:
            for k in METRICS:
                if k in values[arm][g] and k in values[baseline][g]:
                    records.append(_record(arm, baseline, g, k, point[arm][g][k] - point[baseline][g][k],
                                           values[arm][g][k] - values[baseline][g][k]))
    pairs = [_record(arm, against, g, k, point[arm][g][k] - point[against][g][k],
                     values[arm][g][k] - values[against][g][k], against_key="against")
             for arm, against in student_pairs(list(stats), baseline, teacher) for g in GROUPS for k in PAIR_METRICS]
    retention = {}
    if teacher is not None:
        for arm in stats:
            if arm == teacher:
                continue
            retention[arm] = {}
            for g in GROUPS:
                s, t = values[arm][g], values[teacher][g]
                ps, pt = point[arm][g], point[teacher][g]
                with np.errstate(invalid="ignore", divide="ignore"):
                    retention[arm][g] = {
                        "accuracy": _interval(ps["accuracy"] / pt["accuracy"] if pt["accuracy"] else float("nan"),
                                              s["accuracy"] / t["accuracy"]),
                        "perplexity": _interval(float(np.exp(pt["nll"] - ps["nll"])), np.exp(t["nll"] - s["nll"])),
                    }
    return {"metrics": point, "bootstrap": records, "pairs": pairs, "retention": retention}


def student_pairs(arms: list[str], baseline: str, teacher: str | None = None) -> list[tuple[str, str]]:
    """(arm, against) for every unordered pair of students: baseline first, then ``arms``' order; the later is the arm."""
    students = [baseline] + [a for a in arms if a not in (baseline, teacher)]
    return [(later, earlier) for earlier, later in itertools.combinations(students, 2)]


def calibration_bootstrap(confidence: np.ndarray, correct: np.ndarray, confidence_after: np.ndarray,
                          sequence_of: np.ndarray, n_sequences: int, n_resamples: int = 1000, seed: int = 0,
                          bins: int = DEFAULT_BINS) -> dict:
    """Paired CI of ECE_after - ECE_before, resampling sequences (``sequence_of`` in ``[0, n_sequences)``).

    ``confidence`` / ``confidence_after``: top-1 confidence before and after temperature scaling per
    token; ``correct``: top-1 correctness (a positive T keeps the argmax). Each resample's both ECEs
    are on its tokens; the per-sequence bin sums are resampled as in :func:`sequence_bootstrap`.
    """
    before = sequence_sums({"nll": np.zeros_like(correct), "correct": correct, "confidence": confidence},
                           sequence_of, n_sequences, bins)
    after = sequence_sums({"nll": np.zeros_like(correct), "correct": correct, "confidence": confidence_after},
                          sequence_of, n_sequences, bins)
    estimate = ece_from(confidence_after, correct, bins) - ece_from(confidence, correct, bins)
    deltas = [metrics_from_sums(w.T @ after, False, bins)["ece"] - metrics_from_sums(w.T @ before, False, bins)["ece"]
              for w in draw_weights(np.random.RandomState(seed), n_sequences, n_resamples, BOOT_CHUNK)]
    deltas = np.concatenate(deltas)
    return ({"difference": "ece_after - ece_before"} | _judged(_interval(estimate, deltas), "ece")
            | {"better": "lower", "n_resamples": int(deltas.shape[0])})


def _interval(estimate: float, draws: np.ndarray) -> dict:
    """Estimate on all tokens, median and 95% quantile interval of the finite resampled values."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return {"estimate": _finite(estimate), "median": None, "ci_low": None, "ci_high": None, "n_valid": 0}
    low, high = (float(np.quantile(finite, q)) for q in CI_QUANTILES)
    return {"estimate": _finite(estimate), "median": float(np.median(finite)), "ci_low": low, "ci_high": high,
            "n_valid": int(finite.size)}


def _record(arm: str, baseline: str, group: str, metric: str, estimate: float, deltas: np.ndarray,
            against_key: str = "baseline") -> dict:
    out = {"arm": arm, against_key: baseline, "tier": group, "metric": metric} | _interval(estimate, deltas)
    return _judged(out, metric) | {"better": "lower" if metric in LOWER_IS_BETTER else "higher",
                                   "n_resamples": int(deltas.shape[0])}


def _judged(out: dict, metric: str) -> dict:
    """``out`` (an :func:`_interval`) with ``excludes_zero`` and the verdict on a difference in ``metric``."""
    low, high = out["ci_low"], out["ci_high"]
    excludes = low is not None and (low > 0 or high < 0)
    if excludes:
        better = (low > 0) != (metric in LOWER_IS_BETTER)
        verdict = "significant improvement" if better else "significant degradation"
    else:
        verdict = NOT_SIGNIFICANT if low is not None else "no resample had tokens in this tier"
    return out | {"excludes_zero": bool(excludes), "verdict": verdict}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# --------------------------------------------------------------------------- running the models


def _check_inputs(teacher, students, sequences, baseline, n_resamples, bins, batch_size) -> tuple[int, int]:
    """(vocabulary size, context length) shared by every model, after refusing malformed input."""
    if not students:
        raise InputError("no students to audit")
    if baseline not in students:
        raise InputError(f"baseline {baseline!r} is not one of the students ({', '.join(students)})")
    if teacher is not None and TEACHER in students:
        raise InputError(f"a student is called {TEACHER!r}, the name the teacher's rows use; rename it")
    for name, value in (("n_resamples", n_resamples), ("bins", bins), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    models = ({TEACHER: teacher} if teacher is not None else {}) | dict(students)
    vocab = {name: int(m.get_output_embeddings().weight.shape[0]) for name, m in models.items()}
    if len(set(vocab.values())) > 1:
        raise InputError(f"the models' vocabularies differ ({vocab}); they must share one tokenizer")
    contexts = [getattr(m.config, "max_position_embeddings", None) for m in models.values()]
    context = min((c for c in contexts if c), default=None)
    v = next(iter(vocab.values()))
    if len(sequences) < 2:
        raise InputError(f"{len(sequences)} held-out sequence(s); need at least 2 (a calibration and an evaluation half)")
    for i, seq in enumerate(sequences):
        arr = np.asarray(seq)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise InputError(f"sequence {i}: expected a 1-D array of integer token ids, got shape {arr.shape} "
                             f"dtype {arr.dtype}")
        if arr.shape[0] < 2:
            raise InputError(f"sequence {i} has {arr.shape[0]} token(s); needs at least 2 (a context and a target)")
        if arr.min() < 0 or arr.max() >= v:
            bad = int(arr[(arr < 0) | (arr >= v)][0])
            raise InputError(f"sequence {i}: token id {bad} is outside the vocabulary [0, {v})")
        if context is not None and arr.shape[0] > context:
            raise InputError(f"sequence {i} has {arr.shape[0]} tokens, longer than the models' context of {context}")
    return v, context


def _batches(sequences, order, batch_size) -> Iterator[tuple[np.ndarray, object, object]]:
    """(rows, right-padded input ids [b, L], target mask [b, L-1]: position t has a token t+1) per batch."""
    import torch

    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        lengths = np.array([len(sequences[r]) for r in rows])
        ids = torch.zeros((len(rows), int(lengths.max())), dtype=torch.long)
        for j, r in enumerate(rows):
            ids[j, : lengths[j]] = torch.as_tensor(np.asarray(sequences[r], dtype=np.int64))
        yield rows, ids, torch.arange(ids.shape[1] - 1)[None, :] < torch.as_tensor(lengths - 1)[:, None]


def audit_language_models(teacher, students: dict, sequences: list, train_token_counts: np.ndarray, baseline: str,
                          out_dir: Path, n_resamples: int = 1000, seed: int = 0, bins: int = DEFAULT_BINS,
                          batch_size: int = 8, progress: bool = True) -> dict:
    """Score every model on ``sequences`` and write ``out_dir/audit.json`` (atomically); returns its content.

    ``teacher`` may be None: teacher-relative metrics and retention are then omitted. Sequences run
    in batches of similar length; the calibration half first, so each model's temperature is fitted
    (and its stored calibration logits freed) before the evaluation half is scored with it.
    """
    import torch
    from tqdm.auto import tqdm

    vocab, context = _check_inputs(teacher, students, sequences, baseline, n_resamples, bins, batch_size)
    tier_of_id, tier_info = token_tiers(train_token_counts, vocab)
    models = ({TEACHER: teacher} if teacher is not None else {}) | dict(students)
    forwards = {}  # the teacher capture's forward: causal attention, output layer on target positions only
    for name, m in models.items():
        forwards[name] = position_logits(m.eval(), next(m.parameters()).device, contextlib.nullcontext())
    n = len(sequences)
    cal, evaluation = cal_eval_split(n, SPLIT_SEED)
    lengths = np.array([len(s) for s in sequences])
    order = [half[np.argsort(-lengths[half], kind="stable")] for half in (cal, evaluation)]
    cal_tokens = int((lengths[cal] - 1).sum())
    if cal_tokens < MIN_CAL_ROWS:
        raise InputError(f"the calibration half has {cal_tokens} target tokens; need at least {MIN_CAL_ROWS} to fit T")

    stats: dict = {name: [] for name in models}
    scaled: dict = {name: [] for name in models}
    store: dict = {name: [] for name in models}  # float16, max-subtracted calibration logits
    store_targets: list = []
    sequence_of, targets_all = [], []
    temperatures: dict = {}
    store_bytes = 0
    n_batches = sum(-(-len(o) // batch_size) for o in order)
    bar = tqdm(total=n_batches, desc="lm audit", unit="batch", disable=not progress, leave=False)
    for half, rows_in_order in zip(("cal", "eval"), order):
        for rows, ids, targets in _batches(sequences, rows_in_order, batch_size):
            y = ids[:, 1:][targets]
            sequence_of.append(np.repeat(rows, targets.sum(dim=1).numpy()))
            targets_all.append(y.numpy())
            logits = {name: forward(ids[:, :-1], targets) for name, forward in forwards.items()}  # [n, V] each
            for name, values in token_statistics(logits, y, TEACHER if teacher is not None else None).items():
                stats[name].append(values)
            for name, z in logits.items():
                if half == "cal":
                    shifted = (z - z.max(dim=-1, keepdim=True).values).clamp_min(-65504).to("cpu", torch.float16)
                    store[name].append(shifted)
                    store_bytes += shifted.numel() * 2
                else:
                    scaled[name].append(token_statistics({name: z / temperatures[name][0]}, y)[name])
            del logits
            if half == "cal":
                store_targets.append(y.numpy())
            bar.update(1)
        if half == "cal":
            for name in models:
                temperatures[name] = fit_temperature(store[name], store_targets)
                store[name] = []
    bar.close()

    sequence_of = np.concatenate(sequence_of)
    token_tier = tier_of_id[np.concatenate(targets_all)]
    joined = {name: {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]} for name, blocks in stats.items()}
    result = sequence_bootstrap(joined, sequence_of, token_tier, n, baseline, n_resamples, seed, bins,
                                teacher=TEACHER if teacher is not None else None)
    in_eval = np.isin(sequence_of, evaluation)
    eval_position = np.zeros(n, dtype=np.int64)
    eval_position[evaluation] = np.arange(evaluation.size)
    eval_sequence_of = eval_position[sequence_of[in_eval]]
    warnings = _warnings(temperatures, result, token_tier)
    arms = {}
    for name in models:
        raw = {k: v[in_eval] for k, v in joined[name].items()}
        after = {k: np.concatenate([b[k] for b in scaled[name]]) for k in ("nll", "confidence")}
        t, bound = temperatures[name]
        arms[name] = {
            "role": TEACHER if name == TEACHER else "student",
            "overall": result["metrics"][name]["overall"],
            "tiers": {g: result["metrics"][name][g] for g in TIERS},
            "calibration": {
                "temperature": t, "at_bound": bound, "cal_sequences": int(cal.size), "eval_sequences": int(evaluation.size),
                "cal_tokens": cal_tokens, "eval_tokens": int(in_eval.sum()),
                "ece_before": ece_from(raw["confidence"], raw["correct"], bins),
                "ece_after": ece_from(after["confidence"], raw["correct"], bins),
                "nll_before": float(raw["nll"].mean()), "nll_after": float(after["nll"].mean()),
                "ece_change": calibration_bootstrap(raw["confidence"], raw["correct"], after["confidence"],
                                                    eval_sequence_of, int(evaluation.size), n_resamples, seed, bins),
            },
            "retention": result["retention"].get(name),
        }
    audit = {
        "kind": "lm_audit",
        "settings": {"baseline": baseline, "teacher": teacher is not None, "n_resamples": n_resamples, "seed": seed,
                     "bins": bins, "batch_size": batch_size, "split_seed": SPLIT_SEED, "sequences": n,
                     "target_tokens": int(sequence_of.size), "vocab_size": vocab, "context": context,
                     "temperature_bounds": list(T_BOUNDS),
                     "retention": "accuracy: acc_student / acc_teacher; perplexity: ppl_teacher / ppl_student "
                                  "(both higher is better, 1 = the teacher's level)"},
        "tiers": tier_info | {"eval_tokens": {t: int((token_tier == t).sum()) for t in TIERS}},
        "arms": arms,
        "bootstrap": result["bootstrap"],
        "pairs": result["pairs"],
        "memory": {"cal_logits_bytes": store_bytes,
                   "process_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024},
        "warnings": warnings,
    }
    write_json_atomic(Path(out_dir) / "audit.json", audit)
    return audit


def _warnings(temperatures: dict, result: dict, token_tier: np.ndarray) -> list[str]:
    out = [f"{name}: the temperature fit ended on its {bound} bound (T = {t:g})"
           for name, (t, bound) in temperatures.items() if bound is not None]
    out += [f"no held-out target token is in the {t} tier; its metrics are null" for t in TIERS
            if not (token_tier == t).any()]
    partial = sorted({(r["tier"], r["n_valid"]) for r in result["bootstrap"] if 0 < r["n_valid"] < r["n_resamples"]})
    out += [f"{tier} tier: {valid} of the resamples had tokens in it; its CIs use those" for tier, valid in partial]
    return out
