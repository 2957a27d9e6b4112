"""What ``distillab cache inspect`` reports: size, settings, fingerprint, and how good the cached teacher is.

Scoring the teacher against the labels stored beside its outputs catches the common failure of a
cache that is well formed but wrong (a teacher with shuffled label ids scores near chance).
"""

from __future__ import annotations

import numpy as np

from distillab.teacher.cache import TeacherCache
from distillab.teacher.fingerprint import describe_teacher


def macro_f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """sklearn's default macro-F1 (mean over classes in labels ∪ preds): the audit's one core, sized from the data."""
    from distillab.audit.metrics import macro_f1 as core  # numpy only

    labels, preds = np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    return core(labels, preds, int(max(labels.max(initial=-1), preds.max(initial=-1))) + 1)


def teacher_scores(cache: TeacherCache) -> dict | None:
    """Accuracy and macro-F1 of the teacher's argmax per split and overall (None for per-token and sampled caches)."""
    if cache.manifest["tokens"] is not None or cache.kind == "sampled":
        return None
    out = {}
    for split in [*cache.splits, None]:
        ids = cache.ids if split is None else cache.split_ids(split)
        preds = cache.logits(ids).argmax(axis=1) if cache.kind == "dense" else cache.topk(ids)[0][:, 0]
        labels = cache.labels(ids)
        out[split or "all"] = {"rows": int(len(ids)), "accuracy": float(np.mean(preds == labels)),
                               "macro_f1": macro_f1(labels, preds)}
    return out


def feature_sizes(cache: TeacherCache) -> list[dict]:
    """Each stored feature's manifest entry plus its bytes on disk (payload, all shards) and per row."""
    itemsize = {"fp16": 2, "bf16": 2, "fp32": 4}
    out = []
    for name in cache.feature_names:
        entry = cache.feature_info(name)
        per_row = entry["width"] * itemsize[entry["dtype"]]
        out.append({**entry, "bytes": per_row * len(cache), "bytes_per_row": per_row})
    return out


def summarize(cache: TeacherCache) -> dict:
    """A JSON-ready description of ``cache``, including whether its shard checksums were verified on open."""
    manifest = cache.manifest
    total_bytes = sum(shard["bytes"] for shard in manifest["shards"])
    fingerprint = manifest["fingerprint"]
    summary = {
        "path": str(cache.path),
        "kind": cache.kind,
        "rows": len(cache),
        "splits": cache.splits,
        "num_classes": cache.num_classes,
        "classes": cache.classes,
        "width": cache.width,
        "dtype": cache.dtype,
        "k": cache.k,
        "sampled": manifest.get("sampled"),
        "tokens": manifest["tokens"],
        "temperature": cache.temperature,
        "shards": len(manifest["shards"]),
        "bytes": total_bytes,
        "bytes_per_row": total_bytes / max(len(cache), 1),
        "dataset": fingerprint["dataset"],
        "teacher": fingerprint["teacher"],
        "capture": fingerprint["capture"],
        "tool_version": fingerprint["tool_version"],
        "truncation": manifest.get("truncation"),
        "features": feature_sizes(cache),
        "teacher_layers": cache.teacher_layers,
        "teacher_scores": teacher_scores(cache),
        "quantization": fingerprint["teacher"].get("quantization"),
        "checksums_verified": cache.verified,
    }
    return summary


def truncation_lines(summary: dict) -> list[str]:
    """What keeping only some ids per position costs: mass kept, KL lost, per position (mean, p50/p90/p99, max)."""
    t = summary["truncation"]
    if not t["positions"]:
        return ["kept ids   no token positions were cached"]
    q = t.get("quantiles") or {}

    def spread(key, transform=lambda v: v):
        if key not in q:
            return ""
        return " (p50 " + ", p90 ".join(f"{transform(q[key][p]):.4g}" for p in ("p50", "p90")) + \
            f", p99 {transform(q[key]['p99']):.4g})"

    sampled = summary.get("sampled")
    what = (f"the distinct ids of {sampled['draws']} draws" if sampled else f"the top {summary['k']}")
    kept = lambda v: 1 - v  # noqa: E731 (mass kept is one minus mass lost: the quantiles turn around)
    kept_q = "" if "mass_lost" not in q else (
        f" (p50 {kept(q['mass_lost']['p50']):.4g}, p10 {kept(q['mass_lost']['p90']):.4g}, "
        f"p1 {kept(q['mass_lost']['p99']):.4g}, min {kept(t['mass_lost_max']):.4g})")
    lines = [
        f"kept ids   {what} per position, over {t['positions']:,} positions",
        f"mass kept  mean {1 - t['mass_lost_mean']:.4g}{kept_q}",
        f"KL lost    renormalised kept ids KL(q||p) = -log(mass kept): mean {t['kl_renormalized_mean']:.4g} nats"
        f"{spread('kl_renormalized')}",
        f"           uniform tail KL(p||p^): mean {t['kl_uniform_tail_mean']:.4g} nats{spread('kl_uniform_tail')}",
    ]
    if sampled:
        lines += [
            f"draws      distinct ids per position mean {t['distinct_ids_mean']:.4g}{spread('distinct_ids')}; "
            f"KL(draw frequencies||p) mean {t['kl_sample_mean']:.4g} nats{spread('kl_sample')}",
            "bias       0: the sampled loss equals full-vocabulary KD in expectation (the KL figures above are what a "
            "renormalised target on these ids would lose, and per-position noise)",
        ]
    else:
        lines.append("bias       a renormalised top-k target trains towards q, not p: the renormalised KL above per "
                     "position (the bucket tail mode keeps the mass but not its shape)")
    return lines


def format_summary(summary: dict) -> str:
    """Human-readable lines for the terminal."""
    teacher = summary["teacher"]
    lines = [
        f"cache      {summary['path']}",
        f"kind       {summary['kind']}, dtype {summary['dtype']}"
        + (f", {summary['sampled']['draws']} draws per position (seed {summary['sampled']['seed']}, "
           f"at most {summary['k']} distinct ids) of {summary['width']}" if summary.get("sampled")
           else f", top-{summary['k']} of {summary['width']}" if summary["k"] else "")
        + (f", {summary['tokens']} tokens per row" if summary["tokens"] else ""),
        f"rows       {summary['rows']:,} ({', '.join(f'{s} {n:,}' for s, n in summary['splits'].items())})",
        f"classes    {summary['num_classes']} ({', '.join(summary['classes'][:5])}"
        + (", ..." if summary["num_classes"] > 5 else "") + ")",
        f"temperature {summary['temperature'] if summary['temperature'] is not None else 'none (raw logits)'}",
        f"size       {summary['bytes']:,} bytes in {summary['shards']} shard(s), {summary['bytes_per_row']:.1f} bytes/row",
        f"dataset    {summary['dataset']['name']} content sha256 {summary['dataset']['content_sha256'][:16]}…",
        f"teacher    {describe_teacher(teacher)}" + (f" @ {teacher['revision']}" if teacher.get("revision") else ""),
        f"tool       distillab {summary['tool_version']}",
    ]
    quantized = summary.get("quantization")
    if quantized:
        memory = quantized.get("memory_bytes") or {}
        lines.append(f"quantized  {quantized.get('scheme')} by {quantized.get('backend')} {quantized.get('backend_version')}: "
                     f"{len((quantized.get('quantized') or {}).get('linear') or [])} Linear layers, the rest kept "
                     f"(weights {memory.get('float32', 0):,} -> {memory.get(quantized.get('scheme'), 0):,} bytes in "
                     "memory); logits of the quantized copy, not of the full-precision teacher")
    if summary["truncation"]:
        lines += truncation_lines(summary)
    for feature in summary.get("features") or []:
        lines.append(f"feature    {feature['name']}: {feature['pooling']} of hidden_states[{feature['layer']}] "
                     f"(of 0..{summary['teacher_layers']}) over "
                     f"non-padding tokens, width {feature['width']}, {feature['dtype']}, {feature['bytes']:,} bytes "
                     f"({feature['bytes_per_row']:,} bytes/row)")
    for split, scores in (summary["teacher_scores"] or {}).items():
        lines.append(f"teacher vs labels [{split}] accuracy {scores['accuracy']:.4f}, macro-F1 {scores['macro_f1']:.4f} "
                     f"({scores['rows']:,} rows)")
    lines.append(f"checksums  {'all shards match the manifest' if summary['checksums_verified'] else 'not verified'}")
    return "\n".join(lines)
