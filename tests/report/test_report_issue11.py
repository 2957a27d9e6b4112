"""Issue 11 regressions: ties decided by paired CIs, the threshold search floor, what each number means."""

from __future__ import annotations

import os
import stat

import numpy as np

from report_helpers import FIXTURES, make_audit_dict, reference_audit
from distillab.report.decision import load_scenarios, recommend
from distillab.report.render import render_report
from distillab.report.tables import Cite, all_rows_tier_f1, build_tables


def decide(audit):
    scenarios = load_scenarios(None)
    tables = build_tables(audit, scenarios)
    return {r.scenario["id"]: r for r in recommend(audit, tables, scenarios)}, tables


def text(frags):
    return "".join(f.text if isinstance(f, Cite) else f for f in frags)


def with_candidate_bootstrap(audit, nll_ci):
    """Paired CIs between the candidates; every pair separated except distilled+T − vanilla+T on NLL = ``nll_ci``."""
    arms = list(audit["arms"])
    names = arms + [f"{a}+T" for a in arms]

    def matrices(names, pair=None, ci=None):
        c = len(names)
        med = [[None if i == j else 0.02 * (1 if i < j else -1) for j in range(c)] for i in range(c)]
        lo = [[None if i == j else (0.01 if i < j else -0.03) for j in range(c)] for i in range(c)]
        hi = [[None if i == j else (0.03 if i < j else -0.01) for j in range(c)] for i in range(c)]
        if pair:
            i, j = names.index(pair[0]), names.index(pair[1])
            med[i][j], lo[i][j], hi[i][j] = (ci[0] + ci[1]) / 2, ci[0], ci[1]
            med[j][i], lo[j][i], hi[j][i] = -(ci[0] + ci[1]) / 2, -ci[1], -ci[0]
        return {"median": med, "ci_low": lo, "ci_high": hi}

    audit["candidate_bootstrap"] = {
        "f1": {"candidates": arms, "n_resamples": 1000,
               "groups": {g: {"macro_f1": matrices(arms)} for g in ("head", "mid", "tail", "overall")}},
        "calibration": {"candidates": names, "n_resamples": 1000, "groups": {"overall": {
            "ece": matrices(names), "nll": matrices(names, ("distilled+T", "vanilla+T"), nll_ci)}}},
    }
    return audit


def test_a_point_estimate_within_noise_is_a_tie_won_by_the_simplest_recipe():
    # Before issue 11, B took KD + T for its lower NLL (1.3100 vs 1.4297) with no CI at all.
    recs, tables = decide(with_candidate_bootstrap(reference_audit(), (-0.15, 0.02)))
    assert recs["B"].candidate == "vanilla+T"
    decided = dict(recs["B"].items)["Decided by"]
    assert "contains 0 — a tie; rule: simplest recipe first" in text(decided)
    ci = [f for f in decided if isinstance(f, Cite) and f.text == "[-0.1500, +0.0200]"]
    assert ci and tables["decisions"].row("B-distilled+T-vanilla+T").id == ci[0].anchor
    assert "tie" in tables["decisions"].row("B-distilled+T-vanilla+T").cells["outcome"].text


def test_a_separated_difference_keeps_the_best_and_shows_the_ci():
    recs, _ = decide(with_candidate_bootstrap(reference_audit(), (-0.15, -0.02)))
    assert recs["B"].candidate == "distilled+T"
    assert "excludes 0" in text(dict(recs["B"].items)["Decided by"])


def test_same_config_same_recommendation_whatever_the_latency_noise():
    audit = with_candidate_bootstrap(reference_audit(), (-0.15, 0.02))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(5):
        for arm in ("vanilla", "distilled"):
            median = float(rng.uniform(2.0, 4.0))
            audit["inputs"][arm]["meta"]["measurements"] = {"serving": {"ms_per_example": {
                "median": median, "min": median - 1.5, "max": median + 1.5}}}
        recs, _ = decide(audit)
        seen.add(tuple(r.candidate for r in recs.values()))
    assert len(seen) == 1


def test_threshold_search_floor_is_stated():
    audit = reference_audit()
    rows = [{"threshold": t, "coverage": 1.0 - t / 3, "accuracy": 0.97, "n_covered": 100, "source": s}
            for t, s in ((0.21, "confidence quantile"), (0.35, "confidence quantile"), (0.5, "grid"), (0.9, "grid"))]
    audit["calibration"]["distilled"]["eval"]["scaled"]["threshold_search"] = {
        "rows": rows, "threshold": 0.21, "floor": 0.21, "floor_hit": True}
    recs, tables = decide(audit)
    policy = dict(recs["B"].items)["Threshold"]
    assert recs["B"].candidate == "distilled+T"
    assert "0.21" in text(policy) and "The search hit its floor" in text(policy)
    assert "confidence quantile" in tables["coverage-scaled"].row("distilled-0.21").cells["source"].text
    # An audit.json without a search: the grid's bottom is named as such, not as a finding.
    audit = reference_audit()
    for arm in audit["arms"].values():
        for r in arm["coverage"]:
            r["accuracy"] = 0.99
    recs, _ = decide(audit)
    assert "bottom of the audit's threshold grid" in text(dict(recs["A"].items)["Threshold"])


def test_teacher_tail_bound_only_where_the_teacher_is_above_the_students():
    audit = reference_audit()
    recs, _ = decide(audit)
    assert "bounds what any student" in text(dict(recs["C"].items)["Ceiling"])
    audit["arms"]["teacher"]["tiers"]["tail"]["macro_f1"] = 0.10  # below distilled's 0.130
    recs, _ = decide(audit)
    ceiling = text(dict(recs["C"].items)["Ceiling"])
    assert "bounds what any student" not in ceiling and "does not bound the students" in ceiling
    assert "teacher (the model being distilled" in text(dict(recs["C"].items)["Note"])


def test_per_tier_f1_definition_and_all_rows_variant():
    audit = make_audit_dict(students=("vanilla", "kd"))
    _, tables = decide(audit)
    t = tables["tier-metrics"]
    assert "TRUE class is in the tier" in t.note
    classes = audit["tiers"]["tail"]["classes"]
    expected = np.mean([audit["arms"]["kd"]["per_class_f1"][c] for c in classes])
    assert t.value("kd-tail", "macro_f1_all_rows") == expected == all_rows_tier_f1(audit, "kd", "tail")
    assert t.value("kd-overall", "macro_f1_all_rows") == audit["arms"]["kd"]["overall"]["macro_f1"]


def test_js_after_temperature_scaling_is_computed_and_delta_is_named_the_bootstrap_median():
    audit = make_audit_dict(students=("vanilla", "kd"))
    cal = audit["calibration"]
    cal["vanilla"]["eval"]["raw"]["overall"]["js_to_teacher"] = 0.20
    cal["vanilla"]["eval"]["scaled"]["overall"]["js_to_teacher"] = 0.15
    cal["kd"]["eval"]["raw"]["overall"]["js_to_teacher"] = 0.12
    _, tables = decide(audit)
    t = tables["transfer"]
    cell = t.row("fidelity-js_to_teacher-overall").cells["tscaling"].text
    assert cell.startswith("partly") and "0.2000 → 0.1500" in cell and "0.1200" in cell
    assert dict(t.columns)["delta"] == "Δ: bootstrap median" and "MEDIAN of the paired bootstrap" in t.note
    row = t.row("capacity-overall")
    b, d = row.cells["baseline"].value, row.cells["distilled"].value
    assert row.cells["diff"].value == d - b


def test_output_modes_follow_the_umask(tmp_path):
    (tmp_path / "audit.json").write_text((FIXTURES / "audit_small.json").read_text())
    old = os.umask(0o027)
    try:
        render_report(tmp_path, out_dir=tmp_path / "new")
        render_report(tmp_path)  # into an existing folder
    finally:
        os.umask(old)
    for path in (tmp_path / "new" / "report.html", tmp_path / "new" / "figures" / "tier-f1.png",
                 tmp_path / "report.html", tmp_path / "figures" / "tier-f1.png"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    for folder in (tmp_path / "new", tmp_path / "new" / "figures", tmp_path / "figures"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder
