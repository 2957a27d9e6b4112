"""End to end: `distillab report` writes a self-contained page whose recommendation numbers are table cells."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from report_helpers import index_page, make_audit_dict, numbers_in, reference_audit
from distillab.cli import main
from report_cdp import Chromium, find_chromium


def render(audit_dir, *extra) -> str:
    assert main(["report", str(audit_dir), *extra]) == 0
    out = audit_dir if "--out" not in extra else extra[extra.index("--out") + 1]
    return (out / "report.html").read_text() if not isinstance(out, str) else open(f"{out}/report.html").read()


def check_recommendation_numbers(html_text: str) -> None:
    """Every number in a recommendation appears in a table of the page, and every citation in its row."""
    page = index_page(html_text)
    assert page.cites, "no citations in the recommendations"
    for anchor, text in page.cites:
        assert anchor in page.rows, f"citation {text!r} links to #{anchor}, which is no table row"
        assert text.strip() in page.rows[anchor], f"{text!r} is not in row #{anchor}: {page.rows[anchor]!r}"
    table_numbers = set(numbers_in(" ".join(page.table_text)))
    rec_numbers = numbers_in(" ".join(page.rec_text)) + [n for _, t in page.cites for n in numbers_in(t)]
    missing = sorted(set(rec_numbers) - table_numbers)
    assert not missing, f"numbers in the recommendations that no table contains: {missing}"


def check_self_contained(html_text: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html_text), "the page references the network"
    assert "<script" not in html_text


@pytest.fixture(scope="module")
def small_report(tmp_path_factory):
    """The fixture audit rendered once for every test that only reads the result."""
    from report_helpers import FIXTURES

    audit = json.loads((FIXTURES / "audit_small.json").read_text())
    audit_dir = tmp_path_factory.mktemp("small")
    (audit_dir / "audit.json").write_text(json.dumps(audit))
    return audit, audit_dir, render(audit_dir)


def test_fixture_report_end_to_end(small_report):
    small_audit, audit_dir, html_text = small_report
    check_self_contained(html_text)
    check_recommendation_numbers(html_text)
    md = (audit_dir / "report.md").read_text()
    for fig in ("reliability", "ece-nll", "tier-f1", "coverage", "grid", "per-class-delta", "tier-support"):
        assert (audit_dir / "figures" / f"{fig}.png").stat().st_size > 1000
        assert (audit_dir / "figures" / f"{fig}.svg").read_text().lstrip().startswith("<?xml")
        assert f"figures/{fig}.png" in md
    # The same anchors are in the Markdown, so its citations resolve too.
    for anchor in set(re.findall(r"\]\(#([^)]+)\)", md)):
        assert f'<a id="{anchor}"></a>' in md, anchor
    for key, entry in small_audit["inputs"].items():
        assert entry["sha256"] in html_text and entry["sha256"] in md
    assert "cannot be distinguished from zero at this sample size" in html_text
    assert "no effect" not in html_text and "no effect" not in md  # DESIGN.md: never, not even negated


def test_reference_numbers_in_a_reference_shaped_report(write_audit):
    audit_dir = write_audit(reference_audit())
    html_text = render(audit_dir, "--title", "CFPB week 6")
    check_recommendation_numbers(html_text)
    page = index_page(html_text)
    assert "0.1980" in page.rows["tier-metrics-teacher-tail"]
    assert "<title>CFPB week 6</title>" in html_text
    assert "data problem" in html_text
    # The data-confound table sits in "What transferred": the KD lift next to the data lift.
    transferred = html_text[html_text.index('id="what-transferred"'):html_text.index('id="recommendations"')]
    assert 'id="lift-ratio"' in transferred and "3.66×" in page.rows["lift-ratio"]


def test_two_arms_without_teacher_or_grid_and_large_k(write_audit, tmp_path):
    audit = make_audit_dict(students=("vanilla", "kd"), num_classes=50_000, teacher=False, n=2000)
    out = tmp_path / "elsewhere"
    html_text = render(write_audit(audit), "--out", str(out))
    check_recommendation_numbers(html_text)
    page = index_page(html_text)
    assert sum(1 for r in page.rows if r.startswith("per-class-")) == 50  # summarised, not 50k rows
    assert (out / "per_class.csv").read_text().count("\n") == 50_001  # every class downloadable
    assert not (out / "figures" / "grid.png").exists()
    assert "no teacher predictions were given" in html_text
    assert len(html_text) < 3_000_000


def test_ten_arms_with_grid(write_audit):
    students = ("vanilla", "kd") + tuple(f"kd_{i}" for i in range(8))
    audit = make_audit_dict(students=students, grid=True, num_classes=113)
    html_text = render(write_audit(audit))
    check_recommendation_numbers(html_text)
    assert html_text.count("<img ") == 7


def test_custom_scenarios_file(write_audit, tmp_path):
    path = tmp_path / "scenarios.yaml"
    path.write_text("scenarios:\n  - id: Z\n    name: cheap and accurate\n"
                    "    constraints: [{metric: ms_per_example, max: 5}]\n"
                    "    objective: {metric: accuracy_like, goal: max}\n")
    # A binary task without a teacher: the smallest K the report supports.
    audit_dir = write_audit(make_audit_dict(students=("vanilla", "kd"), num_classes=2, teacher=False))
    assert main(["report", str(audit_dir), "--scenarios", str(path)]) == 2  # bad metric: one-line error
    path.write_text(path.read_text().replace("accuracy_like", "head_f1"))
    html_text = render(audit_dir, "--scenarios", str(path))
    assert 'id="scenario-Z"' in html_text and 'id="scenario-A"' not in html_text
    check_recommendation_numbers(html_text)
    assert html_text.count("<img ") == 6  # every figure but the grid


def test_bad_audit_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "audit.json").write_text(json.dumps({"schema_version": 1, "arms": {}}))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing key(s) n, num_classes" in err and err.count("\n") == 1
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def test_failed_rendering_writes_nothing(tmp_path, monkeypatch):
    """A failure while rendering the Markdown must not leave figures or a CSV without a report beside them."""
    from report_helpers import FIXTURES

    from distillab.report import render as render_module

    (tmp_path / "audit.json").write_text((FIXTURES / "audit_small.json").read_text())
    out = tmp_path / "out"

    def broken(*args, **kwargs):
        raise RuntimeError("rendering bug")

    monkeypatch.setattr(render_module, "to_markdown", broken)
    with pytest.raises(RuntimeError, match="rendering bug"):
        render_module.render_report(tmp_path, out_dir=out)
    assert not out.exists() or not any(out.rglob("*.*")), sorted(out.rglob("*"))


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(small_report):
    from PIL import Image

    _, audit_dir, _ = small_report
    with Chromium(find_chromium()) as browser:
        result = browser.load(audit_dir / "report.html")
    assert result["errors"] == []
    external = [u for u in result["requests"] if not u.startswith(("file:", "data:"))]
    assert external == [], f"the page made network requests: {external}"
    assert len(result["images"]) == 7
    for img in result["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img
    shot = np.asarray(Image.open(io.BytesIO(result["screenshot"])).convert("L"), dtype=float)
    assert shot.std() > 10, "screenshot is blank"
    assert (shot < 128).mean() > 0.01, "screenshot has almost no dark (text) pixels"


@pytest.fixture(scope="module")
def real_audit_dir(tmp_path_factory):
    """The real audit on the audit's own synthetic course-shaped predictions (small, with a grid)."""
    from distillab.audit import audit, make_example

    root = tmp_path_factory.mktemp("real")
    paths = make_example(root / "preds", seed=1, n=2000, k=40, grid=True)
    students = {name: paths[name] for name in ("vanilla", "distilled", "kd_T1_a70", "kd_T8_a90")}
    audit(arms=students, baseline="vanilla", teacher=paths["teacher"], train_counts=paths["train_counts"],
          classes=paths["classes"], tier_cutoffs=(7, 21), n_resamples=200, out=root / "audit")
    return root / "audit"


def test_real_audit_report(real_audit_dir):
    html_text = render(real_audit_dir)
    check_self_contained(html_text)
    check_recommendation_numbers(html_text)
    audit = json.loads((real_audit_dir / "audit.json").read_text())
    page = index_page(html_text)
    # Every audit arm, bootstrap row and grid point has its row; every input's fingerprint is shown.
    for arm in audit["arms"]:
        assert f"tier-metrics-{arm}-overall" in page.rows
    assert sum(1 for r in page.rows if r.startswith("bootstrap-")) == len(audit["bootstrap"])
    assert sum(1 for r in page.rows if r.startswith("grid-")) == len(audit["grid"]) == 3
    for entry in audit["inputs"].values():
        assert entry["sha256"] in html_text
    # The transfer table states Test B for ECE and NLL as the audit computed them.
    test_b = audit["transfer_tests"]["test_b"]
    for metric in ("ece", "nll"):
        assert f"{100 * test_b[f'{metric}_fraction']:.0f}%" in page.rows[f"transfer-calibration-{metric}"]
    assert (real_audit_dir / "figures" / "grid.png").exists()
