"""The LM report: both pages written as one set, prose numbers taken from its tables, CI wording."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from distillab.errors import InputError
from distillab.lm.audit import audit_language_models
from distillab.lm.report import render_lm_report

VOCAB = 30


def tiny_llama(seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-audit")
    rng = np.random.RandomState(0)
    seqs = [rng.randint(0, VOCAB, rng.randint(3, 16)).astype(np.int64) for _ in range(10)]
    counts = rng.poisson(np.linspace(40, 0, VOCAB))
    audit_language_models(tiny_llama(0), {"base": tiny_llama(1), "k*d|x": tiny_llama(2)}, seqs, counts, "base", out,
                          n_resamples=40, progress=False)
    return out


def _section(text: str, start: str, stop: str) -> str:
    return text.split(start, 1)[1].split(stop, 1)[0]


def test_pages_figure_and_every_prose_number_is_a_table_cell(audit_dir, tmp_path):
    written = render_lm_report(audit_dir, tmp_path / "report", "LM report")
    md = written["markdown"].read_text()
    assert written["html"].read_text().startswith("<!DOCTYPE html>")
    assert written["figure"].read_bytes().startswith(b"\x89PNG")
    # ΔNLL and its CI for 4 scopes, two retentions, then ΔECE and its CI for the teacher and two students
    assert _prose_numbers_are_cells(md) == 4 * 3 + 2 + 3 * 3
    assert "k\\*d\\|x" in md  # an arm name is escaped, not Markdown syntax


def _prose_numbers_are_cells(md: str) -> int:
    """Number of citations in the summary, after checking each is its row's cell and no number is uncited."""
    summary = _section(md, "## Summary", "## ")
    cites = re.findall(r"(?<!\\)\[([^\[\]]+)\]\(#([^)]+)\)", summary)
    for text, anchor in cites:
        row = next(line for line in md.splitlines() if f'<a id="{anchor}"></a>' in line and line.startswith("|"))
        assert f" {text} " in row.replace("|", " ")
    assert not re.search(r"\d", re.sub(r"(?<!\\)\[[^\[\]]+\]\(#[^)]+\)", "", summary))  # no number outside a citation
    return len(cites)


def test_ci_wording_follows_the_interval(audit_dir, tmp_path):
    audit = json.loads((audit_dir / "audit.json").read_text())
    for r in audit["bootstrap"]:
        if r["metric"] == "nll":
            inside = r["tier"] != "head"
            r.update(estimate=-0.5, ci_low=-0.7 if not inside else -0.3, ci_high=-0.2 if not inside else 0.1,
                     verdict="significant improvement" if not inside else "cannot be distinguished from zero at this sample size")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "audit.json").write_text(json.dumps(audit))
    md = render_lm_report(tmp_path / "a", tmp_path / "r", "t")["markdown"].read_text()
    summary = _section(md, "## Summary", "## ").split("\n- ")[1]  # the student's paragraph
    assert summary.count("not distinguishable from zero at this sample size") == 3
    assert summary.count("a distinguishable improvement") == 1


def test_not_an_lm_audit_is_one_error(tmp_path):
    (tmp_path / "audit.json").write_text(json.dumps({"arms": {}, "bootstrap": []}))
    with pytest.raises(InputError, match="not an LM audit"):
        render_lm_report(tmp_path, tmp_path / "r", "t")
    assert not (tmp_path / "r").exists()


def test_rerender_replaces_the_previous_report(audit_dir, tmp_path):
    out = tmp_path / "r"
    render_lm_report(audit_dir, out, "first")
    render_lm_report(audit_dir, out, "second")
    assert out.joinpath("report.md").read_text().startswith("# second")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no build folder left beside it


def test_without_a_teacher_the_report_has_no_retention(tmp_path):
    rng = np.random.RandomState(1)
    seqs = [rng.randint(0, VOCAB, rng.randint(3, 12)).astype(np.int64) for _ in range(6)]
    audit_language_models(None, {"base": tiny_llama(1), "kd": tiny_llama(2)}, seqs, np.ones(VOCAB), "base",
                          tmp_path / "a", n_resamples=20, progress=False)
    md = render_lm_report(tmp_path / "a", tmp_path / "r", "t")["markdown"].read_text()
    assert "none (teacher-relative metrics omitted)" in md and "### Retention" not in md
    assert "kd vs base, NLL per token: overall" in md


@pytest.fixture(scope="module")
def three_students(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-audit-3")
    rng = np.random.RandomState(2)
    seqs = [rng.randint(0, VOCAB, rng.randint(3, 16)).astype(np.int64) for _ in range(10)]
    audit_language_models(tiny_llama(0), {"base": tiny_llama(1), "topk": tiny_llama(2), "sampled": tiny_llama(3)}, seqs,
                          rng.poisson(np.linspace(40, 0, VOCAB)), "base", out, n_resamples=40, progress=False)
    return json.loads((out / "audit.json").read_text())


def _render(audit: dict, tmp_path, name: str) -> str:
    (tmp_path / name).mkdir()
    (tmp_path / name / "audit.json").write_text(json.dumps(audit))
    return render_lm_report(tmp_path / name, tmp_path / f"{name}-report", "t")["markdown"].read_text()


def _table_rows(md: str, anchor: str) -> list[list[str]]:
    block = _section(md, f'<a id="{anchor}"></a>', "\n\n<a id=")
    return [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()
            if line.startswith(f'| <a id="{anchor}-')]


def test_pairs_of_students_table_and_its_prose(three_students, tmp_path):
    audit = three_students
    md = _render(audit, tmp_path, "plain")
    rows = _table_rows(md, "lm-pairs")
    nll = [r for r in audit["pairs"] if r["metric"] == "nll"]
    assert len(rows) == len(nll) == 3 * 4  # (topk, base), (sampled, base), (sampled, topk) x 4 scopes
    for row, r in zip(rows, nll):
        assert row[0].endswith(r["arm"]) and row[1:4] == [r["against"], r["tier"], f"{r['estimate']:+.4f}"]
        assert row[4:] == [f"{r['ci_low']:+.4f}", f"{r['ci_high']:+.4f}", r["verdict"]]
    _prose_numbers_are_cells(md)

    for r in audit["pairs"]:  # make the tail difference between the two KD students distinguishable, nothing else
        tail = (r["arm"], r["against"], r["tier"]) == ("sampled", "topk", "tail") and r["metric"] == "nll"
        r.update(ci_low=-0.3 if tail else -0.1, ci_high=-0.1 if tail else 0.1, excludes_zero=tail,
                 verdict="significant improvement" if tail else "cannot be distinguished from zero at this sample size")
    md = _render(audit, tmp_path, "tail")
    paragraph = next(p for p in _section(md, "## Summary", "## ").split("\n- ") if p.startswith("Pairs of students"))
    assert "sampled − topk, tail " in paragraph and "a distinguishable improvement (lower NLL for sampled)" in paragraph
    assert paragraph.count("](#lm-pairs-") == 3 and "the other pairs' CIs include zero" in paragraph
    assert _prose_numbers_are_cells(md) > 3

    for r in audit["pairs"]:
        r.update(ci_low=-0.1, ci_high=0.1, excludes_zero=False, verdict="cannot be distinguished from zero at this sample size")
    md = _render(audit, tmp_path, "none")
    assert "no NLL difference is distinguishable from zero in any scope" in _section(md, "## Summary", "## ")


def test_calibration_table_has_the_ece_change_ci(three_students, tmp_path):
    md = _render(three_students, tmp_path, "a")
    rows = _table_rows(md, "lm-calibration")
    assert len(rows) == 4
    for row, (name, arm) in zip(rows, three_students["arms"].items()):
        c = arm["calibration"]
        assert row[0].endswith(name) and row[2:4] == [f"{c['ece_before']:.4f}", f"{c['ece_after']:.4f}"]
        assert row[4:8] == [f"{c['ece_after'] - c['ece_before']:+.4f}", f"{c['ece_change']['ci_low']:+.4f}",
                            f"{c['ece_change']['ci_high']:+.4f}", c["ece_change"]["verdict"]]
    assert "Temperature scaling, ECE after − before T on the evaluation half: teacher " in md
    assert "ECE after T" not in _section(md, '<a id="lm-arms"></a>', "\n\n<a id=")  # moved to the calibration table


def test_an_audit_json_without_the_new_keys_still_renders(three_students, tmp_path):
    audit = json.loads(json.dumps(three_students))
    del audit["pairs"]
    for arm in audit["arms"].values():
        del arm["calibration"]["ece_change"]
    md = _render(audit, tmp_path, "old")
    assert 'id="lm-pairs"' not in md and "Temperature scaling, ECE" not in md
    assert all(row[5:8] == ["—", "—", "—"] for row in _table_rows(md, "lm-calibration"))
    assert "'—': this audit.json has no CI" in md
    _prose_numbers_are_cells(md)
