"""FIXTURE, not an audit: schema-shaped ``audit.json`` dicts filled with plausible random numbers.

The report only reads ``audit.json``; these dicts follow the schema in DESIGN.md + TEAM.md exactly
(keys and nesting) so the report can be tested at scales the real audit would be slow to reach
(10 arms, 50k classes). Values are *not* internally consistent metrics — never use them to test
the audit. End-to-end tests use the real ``distillab.audit`` instead.
"""

from __future__ import annotations

import numpy as np

TIERS = ("head", "mid", "tail")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _metrics(rng, f1, ece, nll, teacher: bool) -> dict:
    return {
        "macro_f1": float(f1),
        "accuracy": float(min(1.0, f1 + 0.25)),
        "ece": float(ece),
        "nll": float(nll),
        "js_to_teacher": float(rng.uniform(0.05, 0.25)) if teacher else None,
        "agreement": float(rng.uniform(0.6, 0.9)) if teacher else None,
        "entropy": float(rng.uniform(0.5, 2.0)),
        "brier": float(rng.uniform(0.3, 0.7)),
    }


def _reliability(rng, n: int, overconfident: float) -> dict:
    edges = np.linspace(0, 1, 16)
    counts = rng.multinomial(n, rng.dirichlet(np.ones(15)))
    bins = []
    for lower, upper, count in zip(edges[:-1], edges[1:], counts):
        if count == 0:
            continue
        conf = (lower + upper) / 2
        bins.append({
            "lower": float(lower), "upper": float(upper), "count": int(count),
            "accuracy": float(np.clip(conf - overconfident * conf * (1 - conf) * 2, 0, 1)),
            "confidence": float(conf),
        })
    return {"edges": edges.tolist(), "bins": bins}


def make_audit_dict(
    students: tuple[str, ...] = ("vanilla", "kd"),
    num_classes: int = 6,
    teacher: bool = True,
    grid: bool = False,
    n: int = 600,
    seed: int = 0,
) -> dict:
    """An audit.json-shaped dict: ``students[0]`` is the baseline, ``students[1]`` the distilled arm.

    With ``grid=True`` every student after the baseline is a KD arm on a T×α grid.
    """
    rng = np.random.default_rng(seed)
    k = num_classes
    counts = np.sort(rng.zipf(1.6, size=k).astype(int) * 5 + 5)[::-1]
    order = np.arange(k)
    cut_head, cut_mid = min(20, max(1, k // 3)), min(60, max(2, 2 * k // 3))
    tier_of = np.array(["head" if r < cut_head else "mid" if r < cut_mid else "tail" for r in range(k)])
    classes = [f"class {c}" for c in range(k)]
    tier_n = {"head": int(n * 0.8), "mid": int(n * 0.16)}
    tier_n["tail"] = n - tier_n["head"] - tier_n["mid"]

    arms = list(students) + (["teacher"] if teacher else [])
    grid_points = [(T, a) for a in (0.7, 0.9) for T in (1.0, 4.0, 8.0)]
    inputs, arm_out, calibration = {}, {}, {}
    for i, arm in enumerate(arms):
        is_teacher = arm == "teacher"
        base = 0.32 if is_teacher else 0.26 + 0.005 * i
        ece = 0.02 if is_teacher else (0.13 if i == 0 else 0.05 + 0.01 * i)
        nll = 1.25 if is_teacher else 1.55 - 0.03 * i
        if is_teacher:
            recipe = {"loss": "teacher"}
        elif i == 0:
            recipe = {"loss": "vanilla"}
        else:
            T, alpha = grid_points[(i - 1) % len(grid_points)] if grid else (4.0, 0.7)
            recipe = {"loss": "kd", "T": T, "alpha": alpha}
        meta = {
            "model": "qwen3-32b-lora" if is_teacher else "modernbert-base",
            "arm": arm,
            "recipe": recipe,
            "params": 32_000_000_000 if is_teacher else 149_691_761,
            "serving": {"ms_per_example": 120.0 if is_teacher else 3.1, "batch_size": 32, "device": "T4"},
            "temperature": None,
        }
        inputs[arm] = {"path": f"/data/{arm}/predictions/val.npz", "sha256": f"{rng.bytes(32).hex()}", "meta": meta}
        tiers = {
            t: _metrics(rng, base * f, ece * (1 + j), nll * (1 + 0.3 * j), teacher)
            for j, (t, f) in enumerate(zip(TIERS, (2.4, 1.6, 0.5)))
        }
        cov = []
        for t in THRESHOLDS:
            c = max(0.0, 0.9 - t * 0.8 - 0.01 * i)
            cov.append({"threshold": t, "coverage": c, "accuracy": min(1.0, 0.6 + t * 0.4 + 0.01 * i),
                        "n_covered": int(c * n)})
        hit = [r for r in cov if r["accuracy"] >= 0.95]
        sla = {"target": 0.95, "threshold": hit[0]["threshold"] if hit else None,
               "coverage": hit[0]["coverage"] if hit else None, "accuracy": hit[0]["accuracy"] if hit else None,
               "n_covered": hit[0]["n_covered"] if hit else None, "best_accuracy": max(r["accuracy"] for r in cov)}
        arm_out[arm] = {
            "overall": _metrics(rng, base, ece, nll, teacher),
            "tiers": tiers,
            "per_class_f1": np.clip(rng.normal(base, 0.15, size=k), 0, 1).tolist(),
            "coverage": cov,
            "sla": sla,
            "reliability": _reliability(rng, n, ece * 5),
        }
        scaled_ece = ece * 0.3
        half = n // 2
        calibration[arm] = {
            "temperature": 1.25 if is_teacher else 1.39 - 0.05 * i,
            "fit_split": "val[cal]", "eval_split": "val[eval]",
            "eval": {
                "raw": {"overall": _metrics(rng, base, ece, nll, teacher), "reliability": _reliability(rng, half, ece * 5),
                        "tiers": {t: _metrics(rng, base, ece, nll, teacher) for t in TIERS}},
                "scaled": {"overall": _metrics(rng, base, scaled_ece, nll - 0.1, teacher),
                           "reliability": _reliability(rng, half, scaled_ece * 5),
                           "tiers": {t: _metrics(rng, base, scaled_ece, nll - 0.1, teacher) for t in TIERS}},
            },
        }

    baseline, distilled = students[0], students[1]
    bootstrap = []
    for arm in arms:
        if arm == baseline:
            continue
        for tier in TIERS + ("overall",):
            med = float(rng.normal(0.015, 0.01))
            width = {"head": 0.03, "mid": 0.056, "tail": 0.1, "overall": 0.02}[tier]
            lo, hi = med - width / 2, med + width / 2
            excl = lo > 0 or hi < 0
            bootstrap.append({
                "arm": arm, "baseline": baseline, "tier": tier, "metric": "macro_f1",
                "median": med, "ci_low": lo, "ci_high": hi, "excludes_zero": excl,
                "verdict": "significant" if excl else "cannot be distinguished from zero at this sample size",
                "n_resamples": 1000, "seed": 42,
            })
    noise = {r["tier"]: r["ci_high"] - r["ci_low"] for r in bootstrap if r["arm"] == distilled}

    grid_rows = []
    kd_arms = [a for a in arms if inputs[a]["meta"]["recipe"]["loss"] == "kd"]
    if len(kd_arms) >= 2:
        for a in kd_arms:
            ov = arm_out[a]["overall"]
            grid_rows.append({"arm": a, "T": inputs[a]["meta"]["recipe"]["T"], "alpha": inputs[a]["meta"]["recipe"]["alpha"],
                              "macro_f1": ov["macro_f1"], "ece": ov["ece"], "nll": ov["nll"],
                              **{f"{t}_f1": arm_out[a]["tiers"][t]["macro_f1"] for t in TIERS}})
        for metric, reverse in (("macro_f1", True), ("ece", False), ("nll", False)):
            ranked = sorted(grid_rows, key=lambda r: r[metric], reverse=reverse)
            for rank, r in enumerate(ranked, 1):
                r[f"rank_{metric}"] = rank

    def frac(key):
        b_raw = calibration[baseline]["eval"]["raw"]["overall"][key]
        b_sc = calibration[baseline]["eval"]["scaled"]["overall"][key]
        d = calibration[distilled]["eval"]["raw"]["overall"][key]
        return {"baseline_raw": b_raw, "baseline_scaled": b_sc, "distilled": d}, (b_raw - b_sc) / max(b_raw - d, 1e-9)

    ece_block, ece_frac = frac("ece")
    nll_block, nll_frac = frac("nll")
    test_a = {}
    if teacher:
        for arm in students:
            test_a[arm] = {t: {"js_to_teacher": float(rng.uniform(0.05, 0.25)),
                               "agreement": float(rng.uniform(0.6, 0.9)),
                               "js_reduction_vs_baseline": 0.0 if arm == baseline else float(rng.uniform(0, 0.05)),
                               "agreement_gain_vs_baseline": 0.0 if arm == baseline else float(rng.uniform(0, 0.05))}
                           for t in ("overall",) + TIERS}

    return {
        "_fixture": "SYNTHETIC FIXTURE for report tests (tests/report/report_synthetic.py); numbers are random, not metrics",
        "schema_version": 1,
        "tool_version": "0.1.0",
        "settings": {"baseline": baseline, "distilled": distilled, "split": "val", "bootstrap_seed": 42,
                     "n_resamples": 1000, "calibration_seed": 1041, "ece_bins": 15, "tier_cutoffs": [20, 60],
                     "coverage_thresholds": list(THRESHOLDS), "sla_target": 0.95, "dataset": "synthetic"},
        "inputs": inputs,
        "n": n,
        "num_classes": k,
        "classes": classes,
        "tiers": {t: {"classes": [int(c) for c in order[tier_of == t]], "n": tier_n[t]} for t in TIERS},
        "tier_source": "train_counts",
        "tier_support": [{"rank": r + 1, "class": int(c), "name": classes[c], "count": int(counts[r]), "tier": str(tier_of[r])}
                         for r, c in enumerate(order)],
        "arms": arm_out,
        "bootstrap": bootstrap,
        "calibration": calibration,
        "transfer_tests": {
            "test_a": test_a,
            "test_b": {"baseline": baseline, "distilled": distilled, "ece_fraction": ece_frac, "nll_fraction": nll_frac,
                       "ece": ece_block, "nll": nll_block},
        },
        "per_class_delta_f1": {a: (np.array(arm_out[a]["per_class_f1"]) - np.array(arm_out[baseline]["per_class_f1"])).tolist()
                               for a in arms if a != baseline},
        "grid": grid_rows,
        "noise_floor": noise,
        "lift_table": None,
    }
