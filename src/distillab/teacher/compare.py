"""``distillab cache compare FULL OTHER``: how far one teacher cache is from another, per head/mid/tail tier.

Made for a quantized teacher's cache against the full-precision one (``distillab teacher --quantize int8``),
but any two dense caches of the same rows compare: per row, KL(p_full || p_other) of the softmaxed stored
logits (nats, float64) and whether their argmax differs; per tier and overall, the rows, the mean / median /
max KL and the top-1 disagreement rate. Tiers are the audit's: classes ranked by the training split's
counts (:mod:`distillab.data.tiers`; the course's 20,60 rank cut-offs above 60 classes, else thirds by
rank, or count thresholds), and a row's tier is its true label's. A tier with no rows reports 0 rows and
no statistics (null), never a zero.
"""

from __future__ import annotations

import math

import numpy as np

from distillab.data.tiers import TIERS, assign_tiers, default_cutoffs
from distillab.errors import InputError
from distillab.teacher.cache import TeacherCache
from distillab.teacher.fingerprint import describe_teacher, diff

GROUPS = (*TIERS, "overall")


def parse_tier_setting(text: str | None, flag: str, integers: bool) -> tuple | None:
    """``"A,B"`` → two numbers (ranks must be integers), or one line naming ``flag``."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        values = ()
    if len(values) != 2 or not all(math.isfinite(v) for v in values) or (
            integers and any(v != int(v) for v in values)):
        what = "two comma-separated integer ranks" if integers else "two comma-separated counts"
        raise InputError(f"{flag} {text!r}: expected {what}, e.g. {'20,60' if integers else '100,20'}")
    return tuple(int(v) for v in values) if integers else values


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def row_kl(full_logits: np.ndarray, other_logits: np.ndarray) -> np.ndarray:
    """KL(softmax(full) || softmax(other)) per row, in nats, computed in float64."""
    lp, lq = log_softmax(full_logits), log_softmax(other_logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=1)


def _open(cache, verify: bool) -> TeacherCache:
    return cache if isinstance(cache, TeacherCache) else TeacherCache.open(cache, verify=verify)


def compare_caches(full, other, dataset, splits: list[str] | None = None, train_split: str = "train",
                   tier_cutoffs: tuple[int, int] | None = None, tier_thresholds: tuple[float, float] | None = None,
                   verify: bool = True) -> dict:
    """The comparison as JSON-ready data (see the module docstring). ``full``/``other``: cache paths or caches.

    Every problem (a non-dense cache, other classes or temperature, rows missing from ``other``, a cache that
    does not hold ``dataset``'s rows unchanged, an unknown split) is one :class:`InputError` naming the cache.
    """
    from distillab.data import train_counts

    a, b = _open(full, verify), _open(other, verify)
    for cache in (a, b):
        if cache.kind != "dense" or cache.manifest.get("tokens") is not None:
            raise InputError(f"{cache.path}: a {cache.kind}{' per-token' if cache.manifest.get('tokens') else ''} "
                             "cache; cache compare needs dense per-row logits in both caches")
    if a.classes != b.classes:
        raise InputError(f"{b.path}: its classes differ from those of {a.path} ({len(b.classes)} vs {len(a.classes)} "
                         "classes, or another order); compare caches of the same label space")
    if a.temperature != b.temperature:
        raise InputError(f"{b.path}: logits stored at temperature {b.temperature} but {a.path}'s at {a.temperature}; "
                         "the KL would mix the temperature with the difference between the teachers")
    splits = list(a.splits) if not splits else list(splits)
    unknown = [s for s in splits if s not in a.splits]
    if unknown:
        raise InputError(f"{a.path}: split {unknown[0]!r} is not in the cache (it has {', '.join(a.splits)})")
    if len(set(splits)) != len(splits):
        raise InputError(f"--split lists a split twice: {splits}")
    checked = [s for s in splits if s in dataset.splits] or None
    a.check_matches(dataset, checked)
    ids = np.concatenate([a.split_ids(s) for s in splits])
    present = np.isin(ids, b.ids)
    if not present.all():
        raise InputError(f"{b.path}: lacks {int((~present).sum()):,} of the {ids.size:,} compared rows of {a.path} "
                         f"(e.g. {str(ids[~present][0])!r}); cache the same splits in both")
    b.check_matches(dataset, checked)
    labels = a.labels(ids)
    k = a.num_classes
    if len(dataset.classes) != k:
        raise InputError(f"{a.path}: {k} classes, but dataset {dataset.name!r} has {len(dataset.classes)}")
    counts = train_counts(dataset, train_split)
    note = None
    if tier_thresholds is None and tier_cutoffs is None:
        tier_cutoffs, note = default_cutoffs(k)
    class_tiers = assign_tiers(counts, tier_cutoffs, tier_thresholds)
    row_tiers = class_tiers[labels]

    p, q = a.logits(ids), b.logits(ids)
    kl = row_kl(p, q)
    disagree = np.asarray(p).argmax(axis=1) != np.asarray(q).argmax(axis=1)
    groups = {}
    for group in GROUPS:
        mask = np.ones(ids.size, dtype=bool) if group == "overall" else row_tiers == group
        n = int(mask.sum())
        groups[group] = {
            "classes": int(k if group == "overall" else (class_tiers == group).sum()),
            "rows": n,
            "mean_kl": float(kl[mask].mean()) if n else None,
            "median_kl": float(np.median(kl[mask])) if n else None,
            "max_kl": float(kl[mask].max()) if n else None,
            "disagreements": int(disagree[mask].sum()),
            "disagreement_rate": float(disagree[mask].mean()) if n else None,
        }
    fa, fb = a.manifest["fingerprint"], b.manifest["fingerprint"]
    differences = [line for line in diff(fa, fb) if not line.startswith("tool_version")]
    return {
        "full": {"path": str(a.path), "teacher": describe_teacher(fa.get("teacher") or {}),
                 "quantization": (fa.get("teacher") or {}).get("quantization")},
        "other": {"path": str(b.path), "teacher": describe_teacher(fb.get("teacher") or {}),
                  "quantization": (fb.get("teacher") or {}).get("quantization")},
        "dataset": dataset.name,
        "splits": {s: int(a.splits[s]) for s in splits},
        "rows": int(ids.size),
        "tiers": {"source": f"training counts of split {train_split!r}", "train_split": train_split,
                  "cutoffs": list(tier_cutoffs) if tier_thresholds is None else None,
                  "thresholds": list(tier_thresholds) if tier_thresholds is not None else None, "note": note},
        "kl": "KL(p_full || p_other) per row in nats: softmax of each cache's stored logits, float64; "
              "a row's tier is its true label's",
        "groups": groups,
        "fingerprint_differences": differences,
    }


def _quantization_text(record: dict | None) -> str:
    if not record:
        return "full precision"
    return f"{record.get('scheme')} by {record.get('backend')} {record.get('backend_version') or ''}".rstrip()


def format_comparison(result: dict) -> str:
    """The comparison as a table for the terminal."""
    tiers = result["tiers"]
    how = (f"count thresholds {','.join(f'{t:g}' for t in tiers['thresholds'])}" if tiers["thresholds"]
           else f"rank cut-offs {tiers['cutoffs'][0]},{tiers['cutoffs'][1]}")
    lines = [
        f"full       {result['full']['path']} ({_quantization_text(result['full']['quantization'])})",
        f"other      {result['other']['path']} ({_quantization_text(result['other']['quantization'])})",
        f"rows       {result['rows']:,} of {result['dataset']} "
        f"({', '.join(f'{s} {n:,}' for s, n in result['splits'].items())})",
        f"tiers      {how} on the {tiers['source']}" + (f" ({tiers['note']})" if tiers["note"] else ""),
        f"KL         {result['kl']}",
        "",
        f"{'tier':<9}{'classes':>8}{'rows':>8}{'mean KL':>12}{'median KL':>12}{'max KL':>11}{'top-1 disagree':>17}",
    ]

    def num(value, spec):
        return "—" if value is None else format(value, spec)

    for group, g in result["groups"].items():
        rate = "—" if g["disagreement_rate"] is None else f"{g['disagreement_rate']:.4f} ({g['disagreements']:,})"
        lines.append(f"{group:<9}{g['classes']:>8,}{g['rows']:>8,}{num(g['mean_kl'], '.3e'):>12}"
                     f"{num(g['median_kl'], '.3e'):>12}{num(g['max_kl'], '.3e'):>11}{rate:>17}")
    if result["fingerprint_differences"]:
        lines.append("")
        lines.append("fingerprints differ in: " + "; ".join(result["fingerprint_differences"][:6])
                     + (" ..." if len(result["fingerprint_differences"]) > 6 else ""))
    return "\n".join(lines)
