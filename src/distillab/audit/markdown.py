"""``audit.md``: the audit's numbers as short Markdown tables a person can read in a terminal.

Plots and the deployment recommendation belong to the report; this file only restates audit.json.
"""

from __future__ import annotations

from distillab.data.tiers import TIERS

GROUPS = ("overall", *TIERS)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _short(value) -> str:
    return "–" if value is None else f"{value:g}"


def _signed(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def render(result: dict) -> str:
    settings = result["settings"]
    baseline, distilled = settings["baseline"], settings["distilled"]
    tiers = result["tiers"]
    lines = [
        "# distillab audit",
        "",
        f"{result['n']:,} rows, {result['num_classes']} classes; baseline **{baseline}**"
        + (f", distilled **{distilled}**" if distilled else "")
        + f". Tiers from {result['tier_source'].replace('_', ' ')}: "
        + ", ".join(f"{t} {len(tiers[t]['classes_evaluated'])} classes / {tiers[t]['n']:,} rows" for t in TIERS)
        + ".",
        "",
    ]
    if result.get("warnings"):  # said before any number: each one qualifies what follows
        lines += ["**Warnings**", "", *(f"- {w}" for w in result["warnings"]), ""]
    lines += ["## Metrics per tier (full set, raw probabilities)", ""]
    rows = []
    for name, arm in result["arms"].items():
        for group in GROUPS:
            m = arm["overall"] if group == "overall" else arm["tiers"][group]
            rows.append(
                [name, group, _fmt(m["macro_f1"]), _fmt(m["accuracy"]), _fmt(m["ece"]), _fmt(m["nll"]),
                 _fmt(m["js_to_teacher"]), _fmt(m["agreement"])]
            )
    lines += _table(["arm", "tier", "macro-F1", "accuracy", "ECE", "NLL", "JS to teacher", "agreement"], rows)

    lines += [
        f"## Paired bootstrap: arm − {baseline}",
        "",
        f"{settings['n_resamples']:,} resamples, seed {settings['seed']}; median and 95% CI of the difference. "
        "A CI containing 0 means the difference cannot be distinguished from zero at this sample size.",
        "",
    ]
    rows = [
        [r["arm"], r["tier"], r["metric"], _signed(r["median"]), f"[{_signed(r['ci_low'])}, {_signed(r['ci_high'])}]", r["verdict"]]
        for r in result["bootstrap"]
    ]
    lines += _table(["arm", "tier", "metric", "median Δ", "95% CI", "verdict"], rows)

    optimizer = settings.get("calibration_optimizer", "exact")
    lines += [f"## Calibration (eval split; T fitted on the cal split, {optimizer} optimizer)", ""]
    rows = []
    for name, cal in result["calibration"].items():
        raw, scaled = cal["eval"]["raw"]["overall"], cal["eval"]["scaled"]["overall"]
        bound = f" ({cal['temperature_at_bound']} bound)" if cal.get("temperature_at_bound") else ""
        rows.append([name, _fmt(cal["temperature"], 3) + bound, _fmt(raw["ece"]), _fmt(scaled["ece"]), _fmt(raw["nll"]),
                     _fmt(scaled["nll"])])
    lines += _table(["arm", "T", "ECE raw", "ECE scaled", "NLL raw", "NLL scaled"], rows)

    lines += ["## Coverage (full set, raw probabilities; covered = max prob ≥ threshold)", ""]
    rows = []
    for name, arm in result["arms"].items():
        for row in arm["coverage"]:
            rows.append([name, _fmt(row["threshold"], 2), _fmt(row["coverage"], 3), _fmt(row["accuracy"], 3), str(row["n_covered"])])
    lines += _table(["arm", "threshold", "coverage", "accuracy", "n covered"], rows)
    rows = []
    for name, arm in result["arms"].items():
        s = arm["sla"]
        rows.append([name, _fmt(s["target"], 2), "none" if s["threshold"] is None else _fmt(s["threshold"], 2),
                     _fmt(s["coverage"], 3), _fmt(s["best_accuracy"], 3)])
    lines += _table(["arm", "SLA accuracy", "lowest threshold", "coverage", "best accuracy"], rows)

    test_a = result["transfer_tests"]["test_a"]
    if test_a:
        lines += [f"## Test A: closer to the teacher? (JS reduction and agreement gain vs {baseline})", ""]
        rows = [
            [name, group, _fmt(g["js_to_teacher"]), _signed(g["js_reduction_vs_baseline"]), _fmt(g["agreement"]),
             _signed(g["agreement_gain_vs_baseline"])]
            for name, groups in test_a.items()
            for group, g in groups.items()
        ]
        lines += _table(["arm", "tier", "JS to teacher", "JS reduction", "agreement", "agreement gain"], rows)

    test_b = result["transfer_tests"]["test_b"]
    if test_b:
        lines += [
            f"## Test B: how much of {test_b['distilled']}'s calibration gain does temperature scaling {test_b['baseline']} reach?",
            "",
        ]
        rows = [
            [metric.upper(), _fmt(test_b[metric]["baseline_raw"]), _fmt(test_b[metric]["baseline_scaled"]),
             _fmt(test_b[metric]["distilled"]),
             "n/a (no gain)" if test_b[f"{metric}_fraction"] is None else f"{100 * test_b[f'{metric}_fraction']:.0f}%"]
            for metric in ("ece", "nll")
        ]
        lines += _table(["metric", f"{test_b['baseline']} raw", f"{test_b['baseline']} + T", test_b["distilled"], "fraction"], rows)

    lift = result["lift_table"]
    if lift:
        lines += ["## Lift table (data confound)", ""]
        lines += _table(
            ["reference", baseline, distilled, "data lift", "KD lift", "ratio"],
            [[_fmt(lift["reference_score"]), _fmt(lift["baseline_score"]), _fmt(lift["distilled_score"]),
              _signed(lift["data_lift"]), _signed(lift["kd_lift"]),
              "n/a (no KD lift)" if lift["ratio"] is None else f"{lift['ratio']:.2f}×"]],
        )

    if result["grid"]:
        lines += ["## KD grid (full set; rank 1 = best)", ""]
        rows = [
            [g["arm"], _short(g["T"]), _short(g["alpha"]), _fmt(g["macro_f1"]), _fmt(g["ece"]), _fmt(g["nll"]),
             _fmt(g["head_f1"]), _fmt(g["mid_f1"]), _fmt(g["tail_f1"]), f"{g['rank_macro_f1']}/{g['rank_ece']}/{g['rank_nll']}"]
            for g in result["grid"]
        ]
        lines += _table(["arm", "T", "α", "macro-F1", "ECE", "NLL", "head F1", "mid F1", "tail F1", "ranks F1/ECE/NLL"], rows)

    if result["noise_floor"]:
        floor = result["noise_floor"]
        lines += [
            f"Noise floor (95% CI width of {distilled}'s macro-F1 difference): "
            + ", ".join(f"{g} {floor[g]:.4f}" for g in GROUPS)
            + ". Differences between arms smaller than this are not evidence.",
            "",
        ]
    return "\n".join(lines)
