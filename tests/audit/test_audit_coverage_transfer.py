"""Coverage/SLA against the course's loop; transfer-test arithmetic on hand-made numbers."""

import pytest

from distillab.audit import metrics as M
from distillab.audit import transfer
from distillab.audit.coverage import coverage_table, sla


def test_coverage_matches_course_loop(case):
    logits, labels = case
    probs = M.softmax(logits * 4)
    table = coverage_table(probs, labels, (0.5, 0.6, 0.7, 0.8, 0.9, 1.0))
    max_prob, pred = probs.max(1), probs.argmax(1)
    for row in table:
        covered = max_prob >= row["threshold"]  # LAB [65b8991a]
        assert row["coverage"] == covered.mean() and row["n_covered"] == covered.sum()
        assert row["accuracy"] == ((pred == labels)[covered].mean() if covered.any() else None)


def test_sla_lowest_threshold_meeting_target():
    table = [
        {"threshold": 0.5, "coverage": 0.9, "accuracy": 0.80, "n_covered": 90},
        {"threshold": 0.6, "coverage": 0.7, "accuracy": 0.96, "n_covered": 70},
        {"threshold": 0.7, "coverage": 0.5, "accuracy": 0.99, "n_covered": 50},
        {"threshold": 0.9, "coverage": 0.0, "accuracy": None, "n_covered": 0},
    ]
    assert sla(table, 0.95) == {"target": 0.95, "threshold": 0.6, "coverage": 0.7, "accuracy": 0.96, "n_covered": 70,
                                "best_accuracy": 0.99}
    none = sla(table, 0.995)
    assert none["threshold"] is None and none["coverage"] is None and none["best_accuracy"] == 0.99


def _arm(js, agreement, f1=0.5, ece=0.1, nll=1.0, tail_f1=0.1):
    group = {"js_to_teacher": js, "agreement": agreement, "macro_f1": f1, "ece": ece, "nll": nll}
    return {"overall": group, "tiers": {"head": group, "mid": group, "tail": dict(group, macro_f1=tail_f1)},
            "per_class_f1": [f1, f1 / 2]}


def test_test_a_signs():
    arms = {"teacher": _arm(0.0, 1.0), "vanilla": _arm(0.3, 0.5), "distilled": _arm(0.2, 0.7)}
    out = transfer.run_test_a(arms, "vanilla")
    assert set(out) == {"vanilla", "distilled"}
    assert out["distilled"]["tail"]["js_reduction_vs_baseline"] == pytest.approx(0.1)
    assert out["distilled"]["tail"]["agreement_gain_vs_baseline"] == pytest.approx(0.2)
    assert out["vanilla"]["overall"]["js_reduction_vs_baseline"] == 0.0
    assert transfer.run_test_a({"vanilla": arms["vanilla"]}, "vanilla") is None


def test_test_b_course_numbers():
    # Course eval half: ECE 0.1308 -> 0.0263 (T) vs 0.0546 (KD): 137%; NLL 1.5515 -> 1.4297 vs 1.3321: ~55%.
    out = transfer.run_test_b("vanilla", "distilled", {"ece": 0.1308, "nll": 1.5515}, {"ece": 0.0263, "nll": 1.4297},
                              {"ece": 0.0546, "nll": 1.3321})
    assert round(100 * out["ece_fraction"]) == 137 and round(100 * out["nll_fraction"]) == 56
    assert out["ece"] == {"baseline_raw": 0.1308, "baseline_scaled": 0.0263, "distilled": 0.0546}
    assert "note" not in out["ece"]


def test_test_b_when_kd_gained_nothing_is_undefined_not_a_billion_percent():
    # The course's max(gain, 1e-9) floor would print 5e7 % here; there is no gain to reproduce.
    assert transfer.gain_fraction(0.1, 0.05, 0.2) is None
    assert transfer.gain_fraction(0.1, 0.05, 0.1) is None
    assert transfer.gain_fraction(0.1, 0.05, 0.05 - 1e-12) == pytest.approx(1.0)
    out = transfer.run_test_b("vanilla", "kd", {"ece": 0.02, "nll": 0.29}, {"ece": 0.015, "nll": 0.28},
                              {"ece": 0.04, "nll": 0.25})
    assert out["ece_fraction"] is None and "no distillation gain" in out["ece"]["note"]
    assert out["nll_fraction"] == pytest.approx(0.01 / 0.04)


def test_lift_table_course_numbers():
    lift = transfer.lift_table(0.2085, 0.2638, 0.2789)
    assert lift["data_lift"] == pytest.approx(0.0553) and lift["kd_lift"] == pytest.approx(0.0151)
    assert lift["ratio"] == pytest.approx(0.0553 / 0.0151)
    assert transfer.lift_table(None, 0.26, 0.27) is None


def test_lift_ratio_is_undefined_when_kd_lifted_nothing():
    # The course's max(kd_lift, 1e-9) would report a data/KD ratio of 5.5e7 here.
    for distilled in (0.2638, 0.25):
        lift = transfer.lift_table(0.2085, 0.2638, distilled)
        assert lift["ratio"] is None and "no gain" in lift["note"]
        assert lift["kd_lift"] == pytest.approx(distilled - 0.2638)
    from distillab.audit.markdown import render

    result = {"settings": {"baseline": "vanilla", "distilled": "kd", "n_resamples": 10, "seed": 42}, "n": 10,
              "num_classes": 3, "tier_source": "train_counts", "arms": {}, "bootstrap": [], "calibration": {},
              "tiers": {t: {"classes_evaluated": [], "n": 0} for t in ("head", "mid", "tail")},
              "transfer_tests": {"test_a": None, "test_b": None}, "lift_table": lift, "grid": [], "noise_floor": None}
    assert "n/a (no KD lift)" in render(result)


def test_grid_ranks_and_filter():
    arms = {"vanilla": _arm(0.3, 0.5, f1=0.30), "a": _arm(0.2, 0.6, f1=0.28, ece=0.05, nll=1.2),
            "b": _arm(0.2, 0.6, f1=0.28, ece=0.02, nll=1.1), "c": _arm(0.2, 0.6, f1=0.26, ece=0.09, nll=1.0)}
    meta = {"vanilla": {"recipe": {"loss": "vanilla"}}, "a": {"recipe": {"loss": "kd", "T": 1.0, "alpha": 0.7}},
            "b": {"recipe": {"loss": "kd", "T": 4.0, "alpha": 0.7}}, "c": {"recipe": {"loss": "kd", "T": 8.0, "alpha": 0.9}}}
    rows = {r["arm"]: r for r in transfer.grid_table(arms, meta)}
    assert set(rows) == {"a", "b", "c"}
    assert [rows[a]["rank_macro_f1"] for a in "abc"] == [1, 1, 3]  # tie shares the best rank
    assert [rows[a]["rank_ece"] for a in "abc"] == [2, 1, 3] and [rows[a]["rank_nll"] for a in "abc"] == [3, 2, 1]
    assert rows["c"]["T"] == 8.0 and rows["c"]["tail_f1"] == 0.1
    assert transfer.grid_table(arms, {"a": meta["a"]}) == []
    # With the teacher's cache fingerprint known, an arm without a sidecar is still no grid point (not a KeyError).
    assert transfer.grid_table(arms, {"a": meta["a"], "teacher": {"cache_fingerprint_sha256": "f"}}) == []


def test_per_class_delta_and_noise_floor():
    arms = {"vanilla": _arm(0.3, 0.5, f1=0.4), "distilled": _arm(0.2, 0.6, f1=0.5)}
    assert transfer.per_class_delta_f1(arms, "vanilla") == {"distilled": pytest.approx([0.1, 0.05])}
    records = [{"arm": "distilled", "metric": "macro_f1", "tier": t, "ci_width": w}
               for t, w in zip(("head", "mid", "tail", "overall"), (0.03, 0.06, 0.1, 0.02))]
    records.append({"arm": "distilled", "metric": "ece", "tier": "head", "ci_width": 9.0})
    assert transfer.noise_floor(records, "distilled") == {"overall": 0.02, "head": 0.03, "mid": 0.06, "tail": 0.1}
    assert transfer.noise_floor(records, "other") is None


def _summary_input(ece_fraction, nll_fraction):
    return {
        "tier_source": "train_counts", "arms": {}, "bootstrap": [],
        "settings": {"baseline": "vanilla", "distilled": "kd"},
        "transfer_tests": {"test_b": {"ece_fraction": ece_fraction, "nll_fraction": nll_fraction}},
    }


def test_terminal_summary_says_n_a_only_when_a_fraction_is_undefined():
    from distillab.audit.command import summary

    both = summary(_summary_input(1.37, 0.55), "out/audit.json")
    assert "137% of kd's ECE gain and 55% of kd's NLL gain" in both and "n/a" not in both
    one = summary(_summary_input(None, 0.55), "out/audit.json")
    assert "n/a of kd's ECE gain" in one and "gained nothing" in one
