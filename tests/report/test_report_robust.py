"""The report under adversarial use (issue 9): identical inputs give identical bytes, timer noise cannot
change a recommendation, the output is one set, names are text, and a malformed audit.json is one line."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from report_helpers import FIXTURES, index_page, make_audit_dict, reference_audit
from distillab.cli import main
from distillab.errors import InputError
from distillab.report import render as render_module
from distillab.report.decision import load_scenarios, recommend
from distillab.report.schema import check_audit
from distillab.report.tables import build_tables


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _write(folder: Path, audit: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit.json").write_text(json.dumps(audit))
    return folder


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- determinism (silent #6)


def test_identical_renders_are_byte_identical(tmp_path):
    """Every output file — SVG ids and dates included — is the same in another process with another hash seed."""
    audit_dir = _write(tmp_path / "audit", json.loads((FIXTURES / "audit_small.json").read_text()))
    render_module.render_report(audit_dir, out_dir=tmp_path / "one")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "distillab", "report", str(audit_dir), "--out", str(tmp_path / "two")],
                   check=True, env=env, capture_output=True)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) > 10
    differ = [name for name in one if one[name] != two[name]]
    assert differ == [], f"outputs differ between identical renders: {differ}"


def _measure(audit: dict, spreads: dict[str, tuple[float, float, float]]) -> dict:
    """Give each arm a serving measurement (min, median, max) in the sidecar layout `distillab train` writes."""
    for arm, (low, median, high) in spreads.items():
        meta = audit["inputs"][arm]["meta"]
        meta.pop("serving", None)
        spread = {"median": median, "min": low, "max": high}
        meta["measurements"] = {"serving": {"ms_per_example": spread, "forward_ms_per_example": dict(spread),
                                            "batch_size": 32, "threads": 1, "device": "cpu"}}
    return audit


def _recommendations(audit: dict, scenarios: list[dict]) -> list:
    tables = build_tables(audit, scenarios)
    return [(r.candidate, [(label, "".join(f if isinstance(f, str) else f.text for f in frags))
                           for label, frags in r.items]) for r in recommend(audit, tables, scenarios)]


LATENCY_SCENARIOS = [
    {"id": "fastest", "objective": {"metric": "ms_per_example", "goal": "min"},
     "secondary": {"metric": "macro_f1", "goal": "max"}},
    {"id": "tight", "constraints": [{"metric": "ms_per_example", "max": 3.0}],  # inside the students' spread
     "objective": {"metric": "macro_f1", "goal": "max"}},
    {"id": "forward", "constraints": [{"metric": "forward_ms_per_example", "max": 50.0}],
     "objective": {"metric": "nll", "goal": "min"}, "secondary": {"metric": "ms_per_example", "goal": "min"}},
]


def test_timer_noise_inside_the_spread_cannot_change_a_recommendation():
    """Issue 11 item 3: medians moved anywhere inside their measured spread leave every recommendation's
    text identical — the default scenarios (A's latency bound and Flip) and latency objectives alike."""
    spreads = {"vanilla": (2.5, 3.1, 4.0), "distilled": (2.4, 3.3, 3.9), "teacher": (110.0, 120.0, 135.0)}
    scenarios = load_scenarios(None) + [dict(s) for s in LATENCY_SCENARIOS]
    from distillab.report.decision import validate_scenarios

    scenarios = validate_scenarios(scenarios)
    for s in scenarios:
        s["include_teacher"] = True
    first = _recommendations(_measure(reference_audit(), spreads), scenarios)
    text_a = dict(first[0][1])
    assert "measured latency" in text_a["Why"] and "within the bound" in text_a["Why"]  # the bound was checked
    rng = np.random.default_rng(0)
    for _ in range(6):
        noisy = {arm: (lo, float(rng.uniform(lo, hi)), hi) for arm, (lo, _, hi) in spreads.items()}
        assert _recommendations(_measure(reference_audit(), noisy), scenarios) == first


def test_latency_difference_inside_the_spread_is_a_tie():
    """Faster only when the whole spread is below: overlapping spreads tie and the next key (macro-F1) decides."""
    audit = _measure(reference_audit(), {"vanilla": (2.0, 2.2, 3.5), "distilled": (2.1, 3.0, 3.4),
                                         "teacher": (110.0, 120.0, 135.0)})
    from distillab.report.decision import validate_scenarios

    scenarios = validate_scenarios([dict(LATENCY_SCENARIOS[0], include_teacher=True)])
    chosen = _recommendations(audit, scenarios)[0][0]
    # distilled has the slower median but the better macro-F1 (0.2789 vs 0.2638); the teacher is measurably slower.
    assert chosen in ("distilled", "distilled+T")
    slow = _measure(reference_audit(), {"vanilla": (2.0, 2.2, 2.5), "distilled": (2.6, 3.0, 3.4),
                                        "teacher": (110.0, 120.0, 135.0)})
    assert _recommendations(slow, scenarios)[0][0] in ("vanilla", "vanilla+T")  # spreads apart: really faster


def test_audit_json_differs_only_in_measurements(tmp_path):
    """The audit copies sidecars verbatim: serving timings land under a key named measurements, nothing else moves."""
    from distillab.audit import audit, make_example

    paths = make_example(tmp_path / "preds", seed=3, n=400, k=12)
    outs = []
    for i, median in enumerate((3.0, 3.7)):
        for name in ("vanilla", "distilled"):
            sidecar = Path(paths[name]).with_suffix(".json")
            meta = json.loads(sidecar.read_text())
            meta["measurements"] = {"serving": {"ms_per_example": {"median": median, "min": 2.0, "max": 4.0}}}
            sidecar.write_text(json.dumps(meta))
        out = tmp_path / f"audit{i}"
        audit(arms={"vanilla": paths["vanilla"], "distilled": paths["distilled"]}, baseline="vanilla",
              teacher=paths["teacher"], train_counts=paths["train_counts"], tier_cutoffs=(3, 7), n_resamples=20, out=out)
        outs.append(out)
    a, b = (json.loads((o / "audit.json").read_text()) for o in outs)
    assert a != b

    def drop(obj):
        if isinstance(obj, dict):
            return {k: drop(v) for k, v in obj.items() if k != "measurements"}
        return [drop(v) for v in obj] if isinstance(obj, list) else obj

    assert drop(a) == drop(b)
    assert (outs[0] / "audit.md").read_bytes() == (outs[1] / "audit.md").read_bytes()


# --------------------------------------------------------------------------- one set, no partial output


def test_a_new_report_replaces_the_whole_set(tmp_path):
    """A figure of an older report (here the grid) must not stay beside a new page that has none."""
    out = tmp_path / "out"
    render_module.render_report(_write(tmp_path / "g", make_audit_dict(students=("vanilla", "kd", "kd2", "kd3"),
                                                                     grid=True)), out_dir=out)
    assert (out / "figures" / "grid.png").exists()
    render_module.render_report(_write(tmp_path / "plain", make_audit_dict()), out_dir=out)
    assert not (out / "figures" / "grid.png").exists() and not (out / "figures" / "grid.svg").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a build folder was left behind"


def test_a_failed_write_keeps_the_previous_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    render_module.render_report(_write(tmp_path / "a", make_audit_dict(seed=1)), out_dir=out)
    before = _files(out)
    calls = []
    real = Path.write_bytes

    def disk_full_on_third(self, data):
        calls.append(self)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", disk_full_on_third)
    assert main(["report", str(_write(tmp_path / "b", make_audit_dict(seed=2))), "--out", str(out)]) == 2
    assert "No space left on device" in _one_error_line(capsys)
    assert _files(out) == before, "new files were mixed into the previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]


def test_a_failed_report_into_a_new_folder_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(render_module, "build_figures", lambda audit: [])  # not about figures: keep it fast
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: (_ for _ in ()).throw(OSError(5, "I/O error")))
    out = tmp_path / "new" / "deeper"
    with pytest.raises(InputError, match="cannot write the report"):
        render_module.render_report(_write(tmp_path / "a", make_audit_dict()), out_dir=out)
    assert not (tmp_path / "new").exists()


def test_build_folder_of_a_killed_report_is_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(render_module, "build_figures", lambda audit: [])
    out = tmp_path / "out"
    dead = tmp_path / ".out.report-999999999-abc"  # no such process
    (dead / "figures").mkdir(parents=True)
    render_module.render_report(_write(tmp_path / "a", make_audit_dict()), out_dir=out)
    assert not dead.exists() and (out / "report.html").exists()


def test_out_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("mine")
    assert main(["report", str(_write(tmp_path / "a", make_audit_dict())), "--out", str(tmp_path / "taken")]) == 2
    assert "taken: exists and is not a folder" in _one_error_line(capsys)
    assert (tmp_path / "taken").read_text() == "mine"


# --------------------------------------------------------------------------- names are text (security)


HOSTILE = "<script>alert(1)</script>"


def test_markdown_neutralises_html_and_markup_in_names(tmp_path):
    audit = make_audit_dict(students=("vanilla", HOSTILE))
    audit["settings"]["distilled"] = HOSTILE
    audit["classes"][0] = '<img src=x onerror="alert(2)">'
    audit["inputs"]["teacher"]["meta"]["model"] = "[click](javascript:alert(3))"
    audit["settings"]["dataset"] = "<b>data</b>"
    scenarios = tmp_path / "s.yaml"
    scenarios.write_text(f"- id: X\n  name: '{HOSTILE}'\n  objective: {{metric: macro_f1, goal: max}}\n")
    audit_dir = _write(tmp_path / "a", audit)
    assert main(["report", str(audit_dir), "--scenarios", str(scenarios)]) == 0
    md = (audit_dir / "report.md").read_text()
    for raw in ("<script", "<img", "<b>", "[click](javascript:"):
        assert raw not in md, raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    html_text = (audit_dir / "report.html").read_text()
    assert "<script" not in html_text and "<img src=x" not in html_text


def test_mathtext_in_names_is_drawn_literally(tmp_path):
    name = "kd$\\frac$"
    audit = make_audit_dict(students=("vanilla", name))
    audit["settings"]["distilled"] = name
    audit["classes"] = [f"${c}^" for c in range(len(audit["classes"]))]
    audit_dir = _write(tmp_path / "a", audit)
    assert main(["report", str(audit_dir)]) == 0
    assert name in (audit_dir / "figures" / "ece-nll.svg").read_text()


# --------------------------------------------------------------------------- malformed audit.json


def _bad(mutate):
    def make():
        audit = make_audit_dict(grid=False)
        mutate(audit)
        return audit
    return make


def _minimal_arm(audit):
    audit["arms"]["vanilla"] = {"overall": {"macro_f1": 0.5}, "per_class_f1": [0.5] * audit["num_classes"]}


def _duplicate_bootstrap(audit):
    audit["bootstrap"].append(dict(audit["bootstrap"][0]))


MALFORMED = {
    "arms as a list": (_bad(lambda a: a.update(arms=list(a["arms"]))), "arms must be an object"),
    "string metric": (_bad(lambda a: a["arms"]["vanilla"]["overall"].update(ece="0.1")), "arms.vanilla.overall.ece"),
    "NaN metric": (_bad(lambda a: a["arms"]["kd"]["overall"].update(nll=float("nan"))), "arms.kd.overall.nll"),
    "minimal arm block": (_bad(_minimal_arm), "arms.vanilla has no 'tiers'"),
    "string n": (_bad(lambda a: a.update(n="600")), "n must be an integer"),
    "bootstrap row without tier": (_bad(lambda a: a["bootstrap"][0].pop("tier")), "bootstrap[0] has no 'tier'"),
    "duplicate bootstrap row": (_bad(_duplicate_bootstrap), "two rows of the"),
    "string grid T": (_bad(lambda a: a.update(grid=[{"arm": "kd", "T": "4", "alpha": 0.7, "macro_f1": 0.2,
                                                      "ece": 0.1, "nll": 1.0}])), "grid[0].T"),
    "list baseline": (_bad(lambda a: a["settings"].update(baseline=["vanilla"])), "settings.baseline"),
    "warnings not a list": (_bad(lambda a: a.update(warnings="careful")), "warnings must be"),
    "delta for no arm": (_bad(lambda a: a["per_class_delta_f1"].update(ghost=[0.0] * 6)), "per_class_delta_f1.ghost"),
    "class id out of range": (_bad(lambda a: a["tier_support"][0].update({"class": 99})), "tier_support[0].class"),
    "string latency": (_bad(lambda a: a["inputs"]["kd"]["meta"].update(
        measurements={"serving": {"ms_per_example": {"median": "fast"}}})),
        "inputs.kd.meta.measurements.serving.ms_per_example.median"),
    "only the teacher": (_bad(lambda a: a.update(arms={"teacher": a["arms"]["teacher"]})), "only the teacher"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_audit_is_one_line_and_writes_nothing(case, tmp_path, capsys):
    make, key = MALFORMED[case]
    audit_dir = tmp_path / "a"
    audit_dir.mkdir()
    (audit_dir / "audit.json").write_text(json.dumps(make()))
    assert main(["report", str(audit_dir), "--out", str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert str(audit_dir / "audit.json") in err and key in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content, says", [(b"{", "not valid JSON"), (b"\xff\xfe{}", "UTF-8"),
                                           (b"[1, 2]", "expected a JSON object"), (b'"text"', "expected a JSON object")])
def test_audit_json_that_is_not_an_object_is_one_line(content, says, tmp_path, capsys):
    (tmp_path / "audit.json").write_bytes(content)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert "audit.json" in err and says in err
    assert not (tmp_path / "out").exists()


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            yield from _leaves(v, path + (i,))
    else:
        yield path, obj


def test_every_number_replaced_by_text_is_caught_before_drawing():
    """No number the report reads may reach a table or plot as a string: the shape check names each one."""
    audit = make_audit_dict(grid=False)
    free = ("settings", "_fixture", "tool_version", "schema_version")
    checked = 0
    for path, value in _leaves(audit):
        if path[0] in free or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        if path[-1] in ("js_reduction_vs_baseline", "agreement_gain_vs_baseline", "entropy", "seed", "temperature"
                        ) and path[0] != "calibration":
            continue  # keys the report never reads stay free
        bad = copy.deepcopy(audit)
        target = bad
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = "x"
        try:
            check_audit(bad, Path("audit.json"))
        except InputError as exc:
            assert ".".join(str(p) for p in path[:2]).split(".")[0] in str(exc)
            checked += 1
            continue
        build_tables(bad, load_scenarios(None))  # accepted: the report must then cope with it
    assert checked > 100


@pytest.mark.parametrize("suffix, text", [(".yaml", "max: .nan"), (".yaml", "max: .inf"), (".yaml", "max: -.inf"),
                                          (".json", None)])
def test_non_finite_scenario_bound_is_refused(suffix, text, tmp_path, capsys):
    path = tmp_path / f"s{suffix}"
    if text is None:
        path.write_text('[{"id": "B", "constraints": [{"metric": "ece", "max": NaN}], '
                        '"objective": {"metric": "nll", "goal": "min"}}]')
    else:
        path.write_text(f"- id: B\n  constraints: [{{metric: ece, {text}}}]\n  objective: {{metric: nll, goal: min}}\n")
    assert main(["report", str(_write(tmp_path / "a", make_audit_dict())), "--scenarios", str(path),
                 "--out", str(tmp_path / "out")]) == 2
    err = _one_error_line(capsys)
    assert str(path) in err and "constraints[0].max must be a finite number" in err
    assert not (tmp_path / "out").exists()


def test_scenarios_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_bytes(b"\xff[]")
    assert main(["report", str(_write(tmp_path / "a", make_audit_dict())), "--scenarios", str(path)]) == 2
    assert str(path) in _one_error_line(capsys)


# --------------------------------------------------------------------------- numbers that mean what they say


def _tail_infeasible(audit: dict) -> dict:
    for r in audit["bootstrap"]:
        if r["tier"] == "tail":
            r.update(ci_low=-0.05, ci_high=0.05, excludes_zero=False)
    return audit


@pytest.mark.parametrize("source, noun", [("train_counts", "training examples"), ("file", "evaluation rows"),
                                          ("eval_labels", "evaluation rows")])
def test_support_counts_are_named_by_their_source(source, noun):
    """Numerical #4: counts of evaluation rows (tiers from the predictions file) are not "training examples"."""
    audit = _tail_infeasible(make_audit_dict())
    audit["tier_source"] = source
    scenarios = load_scenarios(None)
    recs = dict(_recommendations(audit, scenarios)[2][1])
    assert f" {noun}. More labelled" in recs["Ceiling"]
    if noun != "training examples":
        assert "training examples" not in recs["Ceiling"]
    tables = build_tables(audit, scenarios)
    assert noun in tables["tier-summary"].title


def test_candidates_compare_ece_and_nll_on_the_same_rows():
    """Numerical #5: an uncalibrated arm's full-set ECE must not sit beside eval-half ECEs."""
    audit = reference_audit()
    full_set_ece = audit["arms"]["distilled"]["overall"]["ece"]
    del audit["calibration"]["distilled"]
    tables = build_tables(audit, load_scenarios(None))
    cand = tables["candidates"]
    assert cand.row("distilled").cells["ece"].text == "—" != f"{full_set_ece:.4f}"
    assert cand.row("vanilla").cells["ece"].value == audit["calibration"]["vanilla"]["eval"]["raw"]["overall"]["ece"]
    assert "eval half" in cand.note and "distilled was not calibrated" in cand.note
    recs = dict((r[0], r) for r in _recommendations(audit, load_scenarios(None)))
    assert "distilled" not in recs  # B (ECE/NLL) cannot pick it on numbers from other rows


def test_grid_is_read_against_overall_and_head_ci_widths():
    """Numerical #9: both yardsticks are shown, ranks by head F1 too, and the table says which one decides."""
    audit = make_audit_dict(students=("vanilla", "kd", "kd2", "kd3"), grid=True)
    audit["noise_floor"] = {"overall": 0.01, "head": 0.03, "mid": 0.05, "tail": 0.1}
    for g, (f1, head) in zip(audit["grid"], ((0.300, 0.60), (0.285, 0.62), (0.299, 0.59))):
        g.update(macro_f1=f1, head_f1=head)
    grid = build_tables(audit)["grid"]
    rows = {r.cells["arm"].text: r.cells for r in grid.rows}
    assert rows["kd2"]["floor"].text == "below best beyond noise floor"  # 0.015 > overall width 0.01
    assert rows["kd2"]["head_floor"].text == "best" and rows["kd2"]["rank_head_f1"].text == "1"
    assert rows["kd"]["head_floor"].text == "within noise floor"  # 0.02 < head width 0.03
    headers = dict(grid.columns)
    assert "decides" in headers["floor"] and "reference" in headers["head_floor"]
    assert "0.0100" in grid.note and "0.0300" in grid.note and "decides" in grid.note


def test_audit_warnings_are_shown_before_everything_else(tmp_path, monkeypatch):
    monkeypatch.setattr(render_module, "build_figures", lambda audit: [])
    audit = make_audit_dict()
    audit["warnings"] = ["ids missing: arms aligned by row position <b>check</b>",
                         {"message": "temperature of kd hit the bound 1e3", "arm": "kd"}]
    audit_dir = _write(tmp_path / "a", audit)
    assert main(["report", str(audit_dir)]) == 0
    html_text = (audit_dir / "report.html").read_text()
    assert html_text.index('id="warnings"') < html_text.index('id="header"')
    assert "aligned by row position &lt;b&gt;check" in html_text and "hit the bound 1e3" in html_text
    assert "warnings" in index_page(html_text).ids
    md = (audit_dir / "report.md").read_text()
    assert md.index("## Warnings from the audit (2)") < md.index("## Header")
    assert "hit the bound 1e3" in md and "<b>" not in md
