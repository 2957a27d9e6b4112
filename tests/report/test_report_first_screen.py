"""Issue 11: the answer is on the first screen, and what the verdict section says.

Rendered from ``fixtures/audit_verdict.json`` — the real audit of the synthetic example with a grid
and a reference baseline arm (regenerate with ``python tests/report/make_fixture_audit.py``).
"""

from __future__ import annotations

import json
import re

import pytest

from report_cdp import Chromium, find_chromium
from report_helpers import FIXTURES, index_page
from distillab.report.render import render_report

CI = re.compile(r"\[[-+]\d\.\d{4}, [-+]\d\.\d{4}\]")

# Geometry of what a 1400 × 900 window shows first: the verdict box, its CI-bearing links, each scenario line.
GEOMETRY = """JSON.stringify((() => {
  const box = document.getElementById('verdict');
  const rect = e => { const r = e.getBoundingClientRect(); return {top: r.top, bottom: r.bottom}; };
  const dts = Array.from(box.querySelectorAll('dt'));
  return {
    verdict: rect(box),
    cis: Array.from(box.querySelectorAll('a')).filter(a => /^\\[[-+]\\d/.test(a.textContent)).map(a => ({text: a.textContent, ...rect(a)})),
    scenarios: dts.filter(d => d.textContent.startsWith('Scenario ')).map(d => ({text: d.textContent + ' ' + d.nextElementSibling.textContent, ...rect(d.nextElementSibling)})),
    hashes: Array.from(document.querySelectorAll('td.mono')).map(td => ({overflow: td.scrollWidth - td.clientWidth, width: td.getBoundingClientRect().width})),
    toc: Array.from(document.querySelectorAll('nav li')).map(li => li.getClientRects().length),
  };
})())"""


@pytest.fixture(scope="module")
def verdict_report(tmp_path_factory):
    audit_dir = tmp_path_factory.mktemp("verdict")
    (audit_dir / "audit.json").write_text((FIXTURES / "audit_verdict.json").read_text())
    render_report(audit_dir)
    return json.loads((FIXTURES / "audit_verdict.json").read_text()), audit_dir


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install chromium)")
def test_first_900_pixels_hold_the_verdict_a_ci_and_every_scenario_and_hashes_wrap(verdict_report):
    _, audit_dir = verdict_report
    with Chromium(find_chromium()) as browser:
        result = browser.load(audit_dir / "report.html", width=1400, height=900, evaluate=GEOMETRY)
    geometry = json.loads(result["value"])
    assert geometry["verdict"]["top"] < 200, "the verdict does not open the report"
    first_screen_cis = [c for c in geometry["cis"] if c["bottom"] <= 900]
    assert first_screen_cis and CI.search(first_screen_cis[0]["text"])
    assert [s["text"].split(" — ")[0] for s in geometry["scenarios"]] == ["Scenario A", "Scenario B", "Scenario C"]
    for line in geometry["scenarios"]:
        assert line["bottom"] <= 900, f"{line['text']!r} is below the first screen"
    # A 64-character sha256 wraps inside its column instead of widening the table.
    assert geometry["hashes"] and all(h["overflow"] <= 0 and h["width"] < 260 for h in geometry["hashes"])
    assert geometry["toc"] and all(n == 1 for n in geometry["toc"]), "a table-of-contents item is split across columns"


def test_verdict_numbers_are_cited_table_cells(verdict_report):
    _, audit_dir = verdict_report
    html_text = (audit_dir / "report.html").read_text()
    verdict = html_text[html_text.index('id="verdict"'):html_text.index("</section>")]
    assert html_text.index('id="verdict"') < html_text.index("<nav>")
    page = index_page(html_text)
    cites = re.findall(r'<a class="cite" href="#([^"]+)">([^<]+)</a>', verdict)
    assert len(CI.findall(verdict)) >= 4  # capacity per tier, with CIs
    for anchor, text in cites:
        if anchor.startswith("scenario-"):
            assert f'id="{anchor}"' in html_text
            continue
        assert text.replace("&gt;", ">") in page.rows[anchor], (anchor, text)
    for word in ("Capacity", "Calibration", "Fidelity", "For scale", "tfidf_linear (reference)", "teacher"):
        assert word in verdict
    md = (audit_dir / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Header")
    for anchor in set(re.findall(r"\]\(#([^)]+)\)", md)):
        assert f'<a id="{anchor}"></a>' in md, anchor


def test_reference_baseline_is_a_reference_row_never_a_kd_arm_or_candidate(verdict_report):
    _, audit_dir = verdict_report
    page = index_page((audit_dir / "report.html").read_text())
    assert "reference baseline" in page.rows["inputs-tfidf_linear"]
    assert "reference (tfidf_linear)" in page.rows["inputs-tfidf_linear"]
    assert not any(r.startswith("grid-tfidf") for r in page.rows)
    recs = " ".join(page.rec_text) + " ".join(t for _, t in page.cites)
    assert "tfidf_linear (a reference baseline, shown for scale" in recs
    assert not any(a.startswith("candidates-tfidf_linear") for a, _ in page.cites)
