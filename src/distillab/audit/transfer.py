"""What did distillation transfer? Derived comparisons between arms, from already computed metrics.

Test A (Hinton): is the distilled student closer to the teacher's distribution (JS, top-1 agreement)?
Test B (Guo et al. 2017): how much of KD's calibration gain does a one-parameter temperature give
the baseline for free? Plus per-class ΔF1, the data-confound lift table, the T×α grid summary and
the bootstrap noise floor the grid's spread should be read against.
"""

from __future__ import annotations

import numpy as np

from distillab.data.tiers import TIERS

GROUPS = ("overall", *TIERS)
GAP_FLOOR = 1e-9  # course: max(gap, 1e-9) keeps the fraction finite when KD gains nothing


def _group(arm: dict, group: str) -> dict:
    return arm["overall"] if group == "overall" else arm["tiers"][group]


def run_test_a(arms: dict[str, dict], baseline: str, teacher: str = "teacher") -> dict | None:
    """Per student arm and group: JS to the teacher, agreement, and their change vs the baseline."""
    if teacher not in arms:
        return None
    out = {}
    for name, arm in arms.items():
        if name == teacher:
            continue
        out[name] = {}
        for group in GROUPS:
            mine, base = _group(arm, group), _group(arms[baseline], group)
            out[name][group] = {
                "js_to_teacher": mine["js_to_teacher"],
                "agreement": mine["agreement"],
                "js_reduction_vs_baseline": _diff(base["js_to_teacher"], mine["js_to_teacher"]),
                "agreement_gain_vs_baseline": _diff(mine["agreement"], base["agreement"]),
            }
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def gain_fraction(raw: float, scaled: float, distilled: float) -> float | None:
    """Share of KD's gain (raw − distilled) that temperature scaling reaches (raw − scaled).

    The course divides by ``max(gain, 1e-9)``; when KD gained nothing (gain ≤ 0) that gives a
    meaningless ±10⁹-scale percentage, so we return ``None`` instead and Test B says why.
    """
    gain = raw - distilled
    if gain <= 0:
        return None
    return (raw - scaled) / max(gain, GAP_FLOOR)


def run_test_b(baseline: str, distilled: str, baseline_raw: dict, baseline_scaled: dict, distilled_raw: dict) -> dict:
    """Test B on the eval split: baseline raw vs baseline + T vs distilled raw, for ECE and NLL.

    Each metrics dict is an arm's overall metrics on the eval split.
    """
    out = {"baseline": baseline, "distilled": distilled, "split": "eval"}
    for metric in ("ece", "nll"):
        raw, scaled, kd = baseline_raw[metric], baseline_scaled[metric], distilled_raw[metric]
        out[f"{metric}_fraction"] = gain_fraction(raw, scaled, kd)
        out[metric] = {"baseline_raw": raw, "baseline_scaled": scaled, "distilled": kd}
        if out[f"{metric}_fraction"] is None:
            out[metric]["note"] = (f"{distilled} did not lower {metric.upper()} below {baseline}'s on the eval split "
                                   f"({kd:.4f} vs {raw:.4f}): there is no distillation gain for temperature scaling to reproduce")
    return out


def per_class_delta_f1(arms: dict[str, dict], baseline: str) -> dict[str, list[float]]:
    base = np.asarray(arms[baseline]["per_class_f1"])
    return {
        name: (np.asarray(arm["per_class_f1"]) - base).tolist() for name, arm in arms.items() if name != baseline
    }


def lift_table(reference_score: float | None, baseline_score: float, distilled_score: float | None) -> dict | None:
    """The course's data-confound table: how much of the gain is data (baseline − reference) vs KD.

    The course's ratio divides by ``max(kd_lift, 1e-9)``; when KD lifted nothing that is a
    meaningless ~10⁹-scale ratio, so, as for Test B, the ratio is ``None`` with a note instead.
    """
    if reference_score is None or distilled_score is None:
        return None
    data_lift = baseline_score - reference_score
    kd_lift = distilled_score - baseline_score
    table = {
        "reference_score": reference_score,
        "baseline_score": baseline_score,
        "distilled_score": distilled_score,
        "data_lift": data_lift,
        "kd_lift": kd_lift,
        "ratio": data_lift / max(kd_lift, GAP_FLOOR) if kd_lift > 0 else None,
    }
    if table["ratio"] is None:
        table["note"] = f"KD lift is {kd_lift:+.4f} (no gain): a data/KD ratio is undefined"
    return table


def grid_table(arms: dict[str, dict], meta: dict[str, dict]) -> list[dict]:
    """One row per KD arm (sidecar recipe.loss == "kd") with ranks (1 = best); empty below two arms.

    Only float arms taught by the audit's teacher are grid points: a born-again generation or a chain's
    stage learnt the same loss from another model's predictions (its sidecar's ``teacher_cache`` is
    not the teacher's ``cache_fingerprint_sha256``). Files without these keys are all kept.
    """
    teacher_cache = (meta.get("teacher") or {}).get("cache_fingerprint_sha256")

    def grid_point(name: str) -> bool:  # an int8 copy of a KD arm is a deployment candidate, not a grid point
        sidecar = meta.get(name) or {}
        recipe = sidecar.get("recipe", {})
        taught = teacher_cache is None or sidecar.get("teacher_cache", teacher_cache) == teacher_cache
        return recipe.get("loss") == "kd" and not recipe.get("quantized") and taught

    kd = [name for name in arms if grid_point(name)]
    if len(kd) < 2:
        return []
    rows = []
    for name in kd:
        recipe, arm = meta[name]["recipe"], arms[name]
        rows.append(
            {
                "arm": name,
                "T": recipe.get("T"),
                "alpha": recipe.get("alpha"),
                "macro_f1": arm["overall"]["macro_f1"],
                "ece": arm["overall"]["ece"],
                "nll": arm["overall"]["nll"],
                **{f"{t}_f1": arm["tiers"][t]["macro_f1"] for t in TIERS},
            }
        )
    for metric, sign in (("macro_f1", -1.0), ("ece", 1.0), ("nll", 1.0)):
        keys = [sign * row[metric] for row in rows]
        for row, key in zip(rows, keys):
            row[f"rank_{metric}"] = 1 + sum(other < key for other in keys)  # ties share the best rank
    return rows


def noise_floor(bootstrap: list[dict], arm: str) -> dict | None:
    """CI width of the macro-F1 bootstrap for ``arm`` per group: differences narrower than this are noise."""
    widths = {r["tier"]: r["ci_width"] for r in bootstrap if r["arm"] == arm and r["metric"] == "macro_f1"}
    return {group: widths[group] for group in GROUPS} if widths else None
