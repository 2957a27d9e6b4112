"""Turn an LM ``audit.json`` (:mod:`distillab.lm.audit`) into ``report.md`` and ``report.html`` (+ one figure).

Built like the classification report and with its helpers (tables, Markdown escaping, figure style,
the one-set publishing): tables are made once as data, the summary sentences cite table cells (so
every number in prose is the text of a cell in the same report), and the figure is drawn from the
same rows. A difference whose CI contains zero is worded as not distinguishable from zero.

Keys added to ``audit.json`` later (``pairs``, ``calibration.ece_change``) are optional: an older audit
renders without the pairs table and with empty CI cells in the calibration table.
"""

from __future__ import annotations

import base64
from pathlib import Path

from distillab.errors import InputError
from distillab.io import TIERS, read_json
from distillab.report import plots
from distillab.report.render import (  # the classification report's renderers, shared rather than copied
    _CSS,
    FIGURES,
    REPORT_RC,
    ReportFigure,
    _e,
    _encode,
    _frags_html,
    _frags_md,
    _md,
    publish,
    table_html,
    table_md,
)
from distillab.report.tables import Cell, Table, fmt_float, fmt_int, fmt_pct, fmt_signed

GROUPS = ("overall", *TIERS)
METRIC_NAMES = {"nll": "NLL", "perplexity": "perplexity", "accuracy": "accuracy", "ece": "ECE",
                "agreement": "agreement", "kl": "KL(teacher||student)", "js": "JS"}
ARM_COLUMNS = [("arm", "arm"), ("role", "role"), ("tokens", "target tokens"), ("perplexity", "perplexity"),
               ("nll", "NLL"), ("accuracy", "accuracy"), ("agreement", "agreement"), ("kl", "KL"), ("js", "JS"),
               ("ece", "ECE"), ("retention_accuracy", "accuracy retention"),
               ("retention_perplexity", "perplexity retention")]
CALIBRATION_COLUMNS = [("arm", "arm"), ("temperature", "T"), ("ece_before", "ECE before T"),
                       ("ece_after", "ECE after T"), ("delta", "Δ ECE (after − before)"), ("ci_low", "95% CI low"),
                       ("ci_high", "95% CI high"), ("verdict", "verdict"), ("nll_before", "NLL before T"),
                       ("nll_after", "NLL after T")]
PAIR_COLUMNS = [("arm", "arm"), ("against", "against"), ("tier", "scope"), ("delta", "Δ NLL (arm − against)"),
                ("ci_low", "95% CI low"), ("ci_high", "95% CI high"), ("verdict", "verdict (arm vs against)")]


def render_lm_report(audit_dir: Path, out_dir: Path, title: str) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/delta_nll.{png,svg}`` into ``out_dir`` as one set."""
    import matplotlib

    path = Path(audit_dir)
    path = path / "audit.json" if path.is_dir() else path
    audit = read_json(path)
    if not isinstance(audit, dict) or audit.get("kind") != "lm_audit" or not isinstance(audit.get("arms"), dict):
        raise InputError(f"{path}: not an LM audit (expected kind 'lm_audit' as distillab.lm.audit writes it)")
    tables = build_tables(audit)
    summary = summary_fragments(audit, tables)
    with matplotlib.rc_context(REPORT_RC):
        figure = delta_nll_figure(audit, tables["lm-delta"])
        _encode(figure)
    header = _header(audit)
    out = Path(out_dir)
    publish(out, {
        f"{FIGURES}/{figure.id}.png": figure.png,
        f"{FIGURES}/{figure.id}.svg": figure.svg.encode("utf-8"),
        "report.md": _markdown(title, header, audit, summary, figure, tables).encode("utf-8"),
        "report.html": _html(title, header, audit, summary, figure, tables).encode("utf-8"),
    })
    return {"markdown": out / "report.md", "html": out / "report.html", "figure": out / FIGURES / f"{figure.id}.png"}


# --------------------------------------------------------------------------- tables


def build_tables(audit: dict) -> dict[str, Table]:
    """Arms, calibration, per-tier metrics, Δ vs the baseline and between students with CIs, retention, tiers."""
    arms, settings = audit["arms"], audit["settings"]
    baseline = settings["baseline"]
    boot = f"{settings['n_resamples']:,} resamples"
    main = Table("lm-arms", "Arms on the held-out sequences", ARM_COLUMNS,
                 note=f"Point values on every held-out target token. Retention: {settings['retention']}.")
    for name, arm in arms.items():
        o, r = arm["overall"], (arm.get("retention") or {}).get("overall") or {}
        main.add(name, arm=name, role=arm["role"], tokens=Cell(fmt_int(o["tokens"]), o["tokens"]),
                 retention_accuracy=_num((r.get("accuracy") or {}).get("estimate"), 3),
                 retention_perplexity=_num((r.get("perplexity") or {}).get("estimate"), 3),
                 **{k: _num(o.get(k), 2 if k == "perplexity" else 4) for k in METRIC_NAMES})
    first = next(iter(arms.values()))["calibration"]
    calibration = Table("lm-calibration", "Temperature scaling (one T per model)", CALIBRATION_COLUMNS,
                        note=f"T is fitted on the calibration half ({first['cal_sequences']:,} sequences); ECE and NLL "
                             f"before and after T are on the other half ({first['eval_sequences']:,} sequences, "
                             f"{first['eval_tokens']:,} target tokens). Δ ECE: after − before (below 0 = better "
                             f"calibrated after T); CI: 2.5%/97.5% quantiles over {boot} of the evaluation-half "
                             f"sequences (RandomState({settings['seed']}), the same resamples for every model), both "
                             "ECEs on each resample's tokens."
                             + ("" if all(a["calibration"].get("ece_change") for a in arms.values()) else
                                " '—': this audit.json has no CI (written before the CI was added)."))
    for name, arm in arms.items():
        c = arm["calibration"]
        change = c.get("ece_change") or {}  # absent in an audit.json written before the CI was added
        calibration.add(name, arm=name, temperature=_num(c["temperature"], 3), ece_before=_num(c["ece_before"]),
                        ece_after=_num(c["ece_after"]), delta=_num(c["ece_after"] - c["ece_before"], 4, signed=True),
                        ci_low=_num(change.get("ci_low"), 4, signed=True),
                        ci_high=_num(change.get("ci_high"), 4, signed=True), verdict=change.get("verdict", "—"),
                        nll_before=_num(c["nll_before"]), nll_after=_num(c["nll_after"]))
    tiers = Table("lm-tier-metrics", "Per tier", [("arm", "arm"), ("tier", "tier"), ("tokens", "target tokens")]
                  + [(k, METRIC_NAMES[k]) for k in METRIC_NAMES])
    for name, arm in arms.items():
        for t in TIERS:
            m = arm["tiers"][t]
            tiers.add(f"{name}/{t}", arm=name, tier=t, tokens=Cell(fmt_int(m["tokens"]), m["tokens"]),
                      **{k: _num(m.get(k), 2 if k == "perplexity" else 4) for k in METRIC_NAMES})
    delta = Table("lm-delta", f"Difference from the baseline ({baseline}), paired bootstrap over sequences",
                  [("arm", "arm"), ("tier", "scope"), ("metric", "metric"), ("delta", "Δ (arm − baseline)"),
                   ("ci_low", "95% CI low"), ("ci_high", "95% CI high"), ("verdict", "verdict")],
                  note=f"{settings['n_resamples']:,} resamples of the {settings['sequences']:,} sequences "
                       f"(RandomState({settings['seed']})); Δ is the value on all tokens, the CI the 2.5%/97.5% "
                       "quantiles of the resampled differences.")
    for r in audit["bootstrap"]:
        delta.add(f"{r['arm']}/{r['tier']}/{r['metric']}", arm=r["arm"], tier=r["tier"],
                  metric=METRIC_NAMES[r["metric"]], delta=_num(r["estimate"], 4, signed=True),
                  ci_low=_num(r["ci_low"], 4, signed=True), ci_high=_num(r["ci_high"], 4, signed=True),
                  verdict=r["verdict"])
    pairs = Table("lm-pairs", "Pairs of students: NLL per token, arm − against, paired bootstrap over sequences",
                  PAIR_COLUMNS,
                  note=f"Every unordered pair of students (the teacher is in none), on the same {boot} as the Δ table, "
                       "so a pair with the baseline repeats its row there. Below 0 = the arm has the lower NLL. "
                       "Accuracy differences are in audit.json's 'pairs'.")
    for r in audit.get("pairs") or []:  # absent in an audit.json written before pairs were added
        if r["metric"] == "nll":
            pairs.add(f"{r['arm']}/{r['against']}/{r['tier']}", arm=r["arm"], against=r["against"], tier=r["tier"],
                      delta=_num(r["estimate"], 4, signed=True), ci_low=_num(r["ci_low"], 4, signed=True),
                      ci_high=_num(r["ci_high"], 4, signed=True), verdict=r["verdict"])
    keep = Table("lm-retention", "Retention (student ÷ teacher, 1 = the teacher's level)",
                 [("arm", "arm"), ("tier", "scope"), ("metric", "metric"), ("estimate", "retention"),
                  ("ci_low", "95% CI low"), ("ci_high", "95% CI high")])
    for name, arm in arms.items():
        for g, per in (arm.get("retention") or {}).items():
            for metric, v in per.items():
                keep.add(f"{name}/{g}/{metric}", arm=name, tier=g, metric=metric, estimate=_num(v["estimate"], 3),
                         ci_low=_num(v["ci_low"], 3), ci_high=_num(v["ci_high"], 3))
    info = audit["tiers"]
    tier_table = Table("lm-tiers", "Token-frequency tiers (target tokens, by training-corpus count)",
                       [("tier", "tier"), ("ids", "vocabulary ids"), ("mass", "training target mass"),
                        ("eval", "held-out target tokens")], note=info["rule"])
    for t in TIERS:
        tier_table.add(t, tier=t, ids=Cell(fmt_int(info["vocab_ids"][t]), info["vocab_ids"][t]),
                       mass=Cell(fmt_pct(info["train_mass"][t]), info["train_mass"][t]),
                       eval=Cell(fmt_int(info["eval_tokens"][t]), info["eval_tokens"][t]))
    optional = (keep, pairs)  # no teacher: no retention; one student or an older audit.json: no pairs
    return {t.id: t for t in (main, calibration, delta, pairs, keep, tiers, tier_table) if t.rows or t not in optional}


def _num(x, digits: int = 4, signed: bool = False) -> Cell:
    return Cell((fmt_signed if signed else fmt_float)(x, digits), x)


# --------------------------------------------------------------------------- prose


def summary_fragments(audit: dict, tables: dict[str, Table]) -> list[list]:
    """One paragraph (a list of text and :class:`~distillab.report.tables.Cite`) per student other than the baseline."""
    baseline = audit["settings"]["baseline"]
    delta, keep = tables["lm-delta"], tables.get("lm-retention")
    out = []
    for name, arm in audit["arms"].items():
        if arm["role"] != "student" or name == baseline:
            continue
        frags: list = [f"{name} vs {baseline}, NLL per token: "]
        for i, g in enumerate(GROUPS):
            key = f"{name}/{g}/nll"
            if not delta.has(key):
                continue
            frags += ["; " if i else "", f"{g} ", delta.cite(key, "delta"), " [", delta.cite(key, "ci_low"), ", ",
                      delta.cite(key, "ci_high"), "], ", _wording(delta.value(key, "verdict"))]
        frags.append(".")
        if keep is not None and keep.has(f"{name}/overall/accuracy"):
            frags += [" Retention (student ÷ teacher, higher is better): accuracy ",
                      keep.cite(f"{name}/overall/accuracy", "estimate"), ", perplexity ",
                      keep.cite(f"{name}/overall/perplexity", "estimate"), "."]
        out.append(frags)
    pairs = tables.get("lm-pairs")
    if pairs is not None:
        out += _pair_fragments(audit, pairs, baseline)
    calibration = tables["lm-calibration"]
    scaled = [name for name, arm in audit["arms"].items() if (arm["calibration"].get("ece_change") or {}).get("ci_low")
              is not None]
    if scaled:
        frags = ["Temperature scaling, ECE after − before T on the evaluation half: "]
        for i, name in enumerate(scaled):
            frags += ["; " if i else "", f"{name} ", calibration.cite(name, "delta"), " [",
                      calibration.cite(name, "ci_low"), ", ", calibration.cite(name, "ci_high"), "], ",
                      _wording(calibration.value(name, "verdict"), "lower ECE", "higher ECE")]
        out.append(frags + ["."])
    return out


def _pair_fragments(audit: dict, pairs: Table, baseline: str) -> list[list]:
    """Pairs of students not involving the baseline (those are above): the distinguishable NLL differences."""
    rows = [r for r in audit.get("pairs") or [] if r["metric"] == "nll" and baseline not in (r["arm"], r["against"])]
    if not rows:
        return []
    found = [r for r in rows if r["excludes_zero"]]
    if not found:
        return [["Pairs of students (other than with the baseline): no NLL difference is distinguishable from zero "
                 "in any scope at this sample size (every CI includes zero; see the pairs table)."]]
    frags: list = ["Pairs of students (other than with the baseline), the NLL differences (arm − against) whose CI "
                   "excludes zero: "]
    for i, r in enumerate(found):
        key = f"{r['arm']}/{r['against']}/{r['tier']}"
        frags += ["; " if i else "", f"{r['arm']} − {r['against']}, {r['tier']} ", pairs.cite(key, "delta"), " [",
                  pairs.cite(key, "ci_low"), ", ", pairs.cite(key, "ci_high"), "], ",
                  _wording(pairs.value(key, "verdict"), f"lower NLL for {r['arm']}", f"higher NLL for {r['arm']}")]
    others = len(rows) - len(found)
    frags.append("; the other pairs' CIs include zero (pairs table)." if others else ".")
    return [frags]


def _wording(verdict: str, better: str | None = None, worse: str | None = None) -> str:
    if verdict.startswith("significant"):
        out = verdict.replace("significant", "a distinguishable")
        said = better if verdict.endswith("improvement") else worse
        return f"{out} ({said})" if said else out
    if verdict == "—":
        return "no CI"
    return "not distinguishable from zero at this sample size (its CI includes zero)"


# --------------------------------------------------------------------------- figure


def delta_nll_figure(audit: dict, delta: Table) -> ReportFigure:
    """ΔNLL (arm − baseline) per scope with its 95% CI, one colour per arm, read from the Δ table's rows."""
    students = [a for a in audit["arms"] if audit["arms"][a]["role"] == "student" and a != audit["settings"]["baseline"]]
    ax = plots.new_axes(None, figsize=(6.0, 3.6))
    colors = plots.arm_colors(len(students))
    width = 0.8 / max(len(students), 1)
    for i, (name, color) in enumerate(zip(students, colors)):
        keys = [(j, f"{name}/{g}/nll") for j, g in enumerate(GROUPS)]
        keys = [(j - 0.4 + width * (i + 0.5), k) for j, k in keys if delta.has(k) and delta.value(k, "ci_low") is not None]
        xs = [x for x, _ in keys]
        # CI as a bar of its own: the estimate on all tokens may sit outside a skewed percentile interval
        ax.vlines(xs, [delta.value(k, "ci_low") for _, k in keys], [delta.value(k, "ci_high") for _, k in keys],
                  color=color, lw=2)
        ax.plot(xs, [delta.value(k, "delta") for _, k in keys], "o", color=color, label=name)
    ax.axhline(0.0, color="#888", lw=0.8)
    ax.set_xticks(range(len(GROUPS)), GROUPS)
    ax.set_ylabel(f"ΔNLL vs {audit['settings']['baseline']} (nats/token)")
    if students:
        ax.legend(frameon=False, fontsize=8)
    return ReportFigure("delta_nll", "ΔNLL per token-frequency tier",
                        "Points: NLL difference on all target tokens (below 0 = better than the baseline); bars: "
                        "95% paired-bootstrap CIs over sequences. Values as in the Δ table.", ax.figure)


# --------------------------------------------------------------------------- pages


def _header(audit: dict) -> list[tuple[str, str]]:
    s = audit["settings"]
    return [("baseline", s["baseline"]), ("teacher", "yes" if s["teacher"] else "none (teacher-relative metrics omitted)"),
            ("held-out sequences", f"{s['sequences']:,}"), ("target tokens", f"{s['target_tokens']:,}"),
            ("vocabulary", f"{s['vocab_size']:,}"), ("bootstrap", f"{s['n_resamples']:,} resamples, seed {s['seed']}"),
            ("ECE bins", str(s["bins"]))]


def _markdown(title, header, audit, summary, figure, tables) -> str:
    out = [f"# {_md(title)}", ""] + [f"- **{k}:** {_md(v)}" for k, v in header] + [""]
    out += [f"> **Warning:** {_md(w)}  " for w in audit.get("warnings") or []] + [""]
    out += ["## Summary", ""] + [f"- {_frags_md(p)}" for p in summary] + [""]
    out += [f"## {_md(figure.title)}", "", f"![{_md(figure.title)}]({FIGURES}/{figure.id}.png)", "",
            f"*{_md(figure.caption)}*", "", "## Tables", ""]
    for t in tables.values():
        out += [table_md(t), ""]
    return "\n".join(out) + "\n"


def _html(title, header, audit, summary, figure, tables) -> str:
    warnings = "".join(f"<li>{_e(w)}</li>" for w in audit.get("warnings") or [])
    png = base64.b64encode(figure.png).decode("ascii")
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><h1>{_e(title)}</h1>",
        '<dl class="header">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in header) + "</dl>",
        f'<div class="warnings" role="alert"><ul>{warnings}</ul></div>' if warnings else "",
        "<h2>Summary</h2><ul>" + "".join(f"<li>{_frags_html(p)}</li>" for p in summary) + "</ul>",
        f'<figure id="figure-{figure.id}"><h3>{_e(figure.title)}</h3><img src="data:image/png;base64,{png}" '
        f'alt="{_e(figure.title)}"><figcaption>{_e(figure.caption)}</figcaption></figure>',
        "<h2>Tables</h2>",
    ]
    parts += [table_html(t) for t in tables.values()]
    return "\n".join(parts) + "\n</body></html>\n"
