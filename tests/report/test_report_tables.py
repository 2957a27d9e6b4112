"""Tables: built once as data, stable anchors, honest wording, summaries for large K."""

from __future__ import annotations

import pytest

from report_helpers import make_audit_dict
from distillab.report.tables import (
    PER_CLASS_EDGE_ROWS,
    build_tables,
    fmt_pct,
    fmt_signed,
    slug,
    verdict_text,
)


def test_every_row_id_is_unique_and_prefixed_by_its_table(small_audit):
    tables = build_tables(small_audit)
    seen = set()
    for table in tables.values():
        for row in table.rows:
            assert row.id.startswith(table.id + "-")
            assert row.id not in seen
            seen.add(row.id)


@pytest.mark.parametrize(
    "row, expected",
    [
        ({"median": 0.021, "ci_low": 0.007, "ci_high": 0.036, "metric": "macro_f1"}, "significant improvement"),
        ({"median": -0.02, "ci_low": -0.03, "ci_high": -0.01, "metric": "macro_f1"}, "significant degradation"),
        ({"median": 0.02, "ci_low": 0.01, "ci_high": 0.03, "metric": "ece"}, "significant degradation"),
        ({"median": -0.02, "ci_low": -0.03, "ci_high": -0.01, "better": "lower"}, "significant improvement"),
        ({"median": 0.019, "ci_low": -0.009, "ci_high": 0.047, "excludes_zero": False},
         "cannot be distinguished from zero at this sample size"),
        ({"median": 0.0, "ci_low": 0.0, "ci_high": 0.0}, "cannot be distinguished from zero"),  # arm vs itself
        ({"median": 0.1, "ci_low": 0.05, "ci_high": 0.2, "verdict": "the audit's words"}, "the audit's words"),
    ],
)
def test_verdict_wording_is_honest(row, expected):
    text = verdict_text(row)
    assert text.startswith(expected)
    assert "no effect" not in text


def test_transfer_table_is_honest_and_answers_test_b(small_audit):
    transfer = build_tables(small_audit)["transfer"]
    texts = " ".join(c.text for r in transfer.rows for c in r.cells.values())
    assert "no effect" not in texts
    assert "Test B" in texts  # whether T-scaling reproduces ECE/NLL is answered
    for row in transfer.rows:
        if row.id.startswith("transfer-capacity"):
            lo, hi = row.cells["ci"].value
            significant = row.cells["verdict"].text.startswith("significant")
            assert significant == (lo > 0 or hi < 0)


def test_test_b_without_a_distillation_gain_says_so(small_audit):
    import copy

    audit = copy.deepcopy(small_audit)
    test_b = audit["transfer_tests"]["test_b"]
    test_b["ece_fraction"] = None
    test_b["ece"]["note"] = "kd did not lower ECE below vanilla's on the eval split"
    tables = build_tables(audit)
    assert tables["test-b"].rows[0].cells["fraction"].text == "n/a: no distillation gain"
    ece_row = next(r for r in tables["transfer"].rows if r.id == "transfer-calibration-ece")
    assert ece_row.cells["tscaling"].text.startswith("n/a — the distilled arm has no gain")


def test_grid_labels_points_within_the_noise_floor_of_the_best():
    audit = make_audit_dict(students=("vanilla", "kd", "kd_b", "kd_c"), grid=True)
    audit["noise_floor"]["overall"] = 0.004
    f1 = {g["arm"]: g["macro_f1"] for g in audit["grid"]}
    best = max(f1.values())
    labels = {r.cells["arm"].text: r.cells["floor"].text for r in build_tables(audit)["grid"].rows}
    for arm, value in f1.items():
        expected = "best" if value == best else ("within noise floor" if best - value < 0.004 else
                                                 "below best beyond noise floor")
        assert labels[arm] == expected


def test_transfer_without_teacher_says_fidelity_not_measured():
    audit = make_audit_dict(students=("vanilla", "kd"), teacher=False)
    tables = build_tables(audit)
    row = tables["transfer"].row("fidelity")
    assert "no teacher" in row.cells["verdict"].text
    assert "js_to_teacher" not in dict(tables["tier-metrics"].columns)


def test_no_grid_means_no_grid_table():
    assert "grid" not in build_tables(make_audit_dict(students=("vanilla", "kd")))


def test_grid_table_carries_ranks():
    audit = make_audit_dict(students=("vanilla", "kd", "kd_b", "kd_c"), grid=True)
    grid = build_tables(audit)["grid"]
    assert len(grid.rows) == 3
    assert sorted(r.cells["rank_macro_f1"].value for r in grid.rows) == [1, 2, 3]
    assert "noise floor" in grid.note.lower()


def test_candidates_copy_and_link_their_source_cells(small_audit):
    tables = build_tables(small_audit)
    by_id = {row.id: row for t in tables.values() for row in t.rows}
    for row in tables["candidates"].rows:
        for key, cell in row.cells.items():
            if cell.href:
                assert cell.href in by_id, f"{row.id}.{key} links to a missing row {cell.href}"
                source_texts = {c.text for c in by_id[cell.href].cells.values()}
                assert cell.text in source_texts, f"{row.id}.{key}={cell.text} not in {cell.href}"


def test_per_class_is_summarised_for_large_k():
    audit = make_audit_dict(students=("vanilla", "kd"), num_classes=500, teacher=False)
    table = build_tables(audit)["per-class"]
    assert len(table.rows) == 2 * PER_CLASS_EDGE_ROWS
    assert table.csv_name == "per_class.csv"
    deltas = [r.cells["delta:kd"].value for r in table.rows]
    assert deltas[:PER_CLASS_EDGE_ROWS] == sorted(deltas[:PER_CLASS_EDGE_ROWS], reverse=True)
    assert min(deltas[:PER_CLASS_EDGE_ROWS]) >= max(deltas[PER_CLASS_EDGE_ROWS:])


def test_per_class_lists_every_class_for_small_k(small_audit):
    table = build_tables(small_audit)["per-class"]
    assert len(table.rows) == small_audit["num_classes"]
    assert table.csv_name is None
    assert [r.cells["rank"].value for r in table.rows] == sorted(r.cells["rank"].value for r in table.rows)


def test_tier_support_table_keeps_boundaries_for_many_classes():
    audit = make_audit_dict(students=("vanilla", "kd"), num_classes=300)
    table = build_tables(audit)["tier-support"]
    ranks = [r.cells["rank"].value for r in table.rows]
    assert ranks[:5] == [1, 2, 3, 4, 5] and ranks[-1] == 300
    assert {20, 21, 60, 61} <= set(ranks)


def test_formatting():
    assert fmt_signed(0.015) == "+0.0150"
    assert fmt_signed(None) == "—"
    assert fmt_pct(1.3714) == "137%"
    assert slug("kd_T4_a70+T") == "kd_T4_a70+T"
    # Injective: each of these must get its own anchor (a chained != never compared the first with the last).
    names = ("kd T=4", "kd-T=4", "kd T-4", "kd~20T=4", "kd_T=4", "kd a", "kd\u020a", "~", "")
    assert len({slug(n) for n in names}) == len(names)
    assert slug("kd T=4") == "kd~20~T~3d~4"


def test_arm_names_that_differ_only_in_punctuation_get_distinct_anchors():
    audit = make_audit_dict(students=("vanilla", "kd a", "kd-a", "kd/a"))
    tables = build_tables(audit)  # duplicate anchors would raise
    ids = [r.id for r in tables["tier-metrics"].rows]
    assert len(ids) == len(set(ids))


def test_lift_table_without_a_kd_lift_shows_no_ratio():
    audit = make_audit_dict(students=("vanilla", "kd"))
    audit["lift_table"] = {"reference_score": 0.2085, "baseline_score": 0.2638, "distilled_score": 0.25,
                           "data_lift": 0.0553, "kd_lift": -0.0138, "ratio": None,
                           "note": "KD lift is -0.0138 (no gain): a data/KD ratio is undefined"}
    lift = build_tables(audit)["lift"]
    assert lift.row("ratio").cells["value"].text == "—"
    assert "ratio is undefined" in lift.note
