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
    summary = _section(md, "## Summary", "## ")
    cites = re.findall(r"(?<!\\)\[([^\[\]]+)\]\(#([^)]+)\)", summary)
    assert len(cites) == 4 * 3 + 2  # ΔNLL and its CI for 4 scopes, then two retentions
    for text, anchor in cites:
        row = next(line for line in md.splitlines() if f'<a id="{anchor}"></a>' in line and line.startswith("|"))
        assert f" {text} " in row.replace("|", " ")
    assert not re.search(r"\d", re.sub(r"(?<!\\)\[[^\[\]]+\]\(#[^)]+\)", "", summary))  # no number outside a citation
    assert "k\\*d\\|x" in md  # an arm name is escaped, not Markdown syntax


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
    summary = _section(md, "## Summary", "## ")
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
