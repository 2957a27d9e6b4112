"""Helpers for the report tests: synthetic audits (a FIXTURE, see report_synthetic.py) and page parsing.

A module of its own (not conftest.py) so that ``from report_helpers import ...`` cannot pick up
another folder's conftest under pytest's rootdir imports."""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from report_synthetic import make_audit_dict  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
# A number as a reader sees it: not glued to a word (arm "kd_T8" is a name, "T=8" is a number).
NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?%?(?![\w])")


def numbers_in(text: str) -> list[str]:
    return [m.group(0).lstrip("+").rstrip(",") for m in NUMBER.finditer(text)]


class PageIndex(HTMLParser):
    """Text of every table row by id, and each recommendation's citations and plain text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rows: dict[str, str] = {}
        self.table_text: list[str] = []
        self.cites: list[tuple[str, str]] = []  # (anchor, text) inside recommendations
        self.rec_text: list[str] = []  # recommendation text outside citations
        self.ids: set[str] = set()
        self._row: str | None = None
        self._table_depth = 0
        self._rec_depth = 0  # > 0 inside <div class="rec">
        self._div_stack: list[bool] = []
        self._cite: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "table":
            self._table_depth += 1
        elif tag == "tr" and a.get("id"):
            self._row = a["id"]
            self.rows[self._row] = ""
        elif tag == "div":
            is_rec = "rec" in (a.get("class") or "").split()
            self._div_stack.append(is_rec)
            self._rec_depth += is_rec
        elif tag == "a" and self._rec_depth and "cite" in (a.get("class") or ""):
            self._cite = a["href"].lstrip("#")
            self.cites.append((self._cite, ""))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table_depth -= 1
        elif tag == "tr":
            self._row = None
        elif tag == "div" and self._div_stack:
            self._rec_depth -= self._div_stack.pop()
        elif tag == "a":
            self._cite = None

    def handle_data(self, data):
        if self._row is not None:
            self.rows[self._row] += " " + data
        if self._table_depth:
            self.table_text.append(data)
        if self._rec_depth:
            if self._cite is not None:
                anchor, text = self.cites[-1]
                self.cites[-1] = (anchor, text + data)
            else:
                self.rec_text.append(data)


def index_page(html_text: str) -> PageIndex:
    page = PageIndex()
    page.feed(html_text)
    return page


def reference_audit() -> dict:
    """A FIXTURE with the course's published numbers (REFERENCE-EXPERIMENT.md §10) where they exist.

    Numbers the course did not publish (KD + T, coverage) are set to plausible values, named here.
    """
    audit = make_audit_dict(students=("vanilla", "distilled"), num_classes=113, teacher=True, n=6430)
    arms, cal = audit["arms"], audit["calibration"]
    for arm, f1, tail in (("vanilla", 0.2638, 0.125), ("distilled", 0.2789, 0.130), ("teacher", 0.322, 0.198)):
        arms[arm]["overall"]["macro_f1"] = f1
        arms[arm]["tiers"]["tail"]["macro_f1"] = tail
    for arm, raw, scaled in (("vanilla", (0.1308, 1.5515), (0.0263, 1.4297)),
                             ("distilled", (0.0546, 1.3321), (0.0300, 1.3100))):  # KD + T: not published
        cal[arm]["eval"]["raw"]["overall"].update(ece=raw[0], nll=raw[1])
        cal[arm]["eval"]["scaled"]["overall"].update(ece=scaled[0], nll=scaled[1])
    cal["vanilla"]["temperature"] = 1.39
    for r in audit["bootstrap"]:
        if r["arm"] == "distilled":
            med, lo, hi = {"head": (0.021, 0.007, 0.036), "mid": (0.019, -0.009, 0.047),
                           "tail": (0.005, -0.025, 0.035), "overall": (0.015, -0.002, 0.031)}[r["tier"]]
            excl = lo > 0 or hi < 0
            r.update(median=med, ci_low=lo, ci_high=hi, excludes_zero=excl)
    for arm in ("vanilla", "distilled"):
        audit["inputs"][arm]["meta"]["serving"]["ms_per_example"] = 3.1  # same architecture, same cost
    audit["lift_table"] = {"reference_score": 0.2085, "baseline_score": 0.2638, "distilled_score": 0.2789,
                           "data_lift": 0.0553, "kd_lift": 0.0151, "ratio": 0.0553 / 0.0151}
    return audit
