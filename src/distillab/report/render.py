"""Turn ``audit.json`` into ``report.html`` (self-contained) and ``report.md`` (+ ``figures/``).

The page is built from three lists made once: tables (:mod:`.tables`), figures (:mod:`.plots`)
and recommendations (:mod:`.decision`). HTML and Markdown are two renderings of the same lists, so
they cannot disagree. The HTML loads nothing from the network: figures are inline base64 PNGs,
styles are inline, and there is no script.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distillab import __version__
from distillab.errors import InputError
from distillab.io import read_json
from distillab.report import plots
from distillab.report.decision import RANKING_RULE, Recommendation, load_scenarios, recommend
from distillab.report.schedules import SCHEDULES_FILE, load_schedules
from distillab.report.schema import check_audit
from distillab.report.verdict import verdict_items
from distillab.report.tables import (
    SCOPES,
    TIERS,
    Cite,
    DuplicateRow,
    Table,
    baseline_arm,
    bootstrap_rows,
    build_tables,
    distilled_arm,
    fmt_float,
    grid_floors,
    has_teacher,
    meta_of,
    per_class_columns,
    per_class_records,
    recipe_label,
    student_arms,
    support_noun,
    support_source_text,
)

FIGURE_DPI = 100
# Matplotlib settings for every figure of the report, applied only while it is drawn: names are
# drawn literally (an arm called "kd$\frac$" is not mathtext), and the SVGs are byte-identical
# between runs (fixed id salt; the Date metadata is dropped when saving).
REPORT_RC = {"svg.hashsalt": "distillab-report", "svg.fonttype": "none", "text.parse_math": False,
             "text.usetex": False}
FIGURES = "figures"
# A folder being built by a report in progress, beside its target: ".OUT.report-PID-XXXX".
_BUILD_PREFIX = ".{name}.report-{pid}-"
UNKNOWN_DATASET = "not recorded in audit.json"
# Shown under "What transferred" rather than with the other tables.
SUMMARY_TABLES = ("transfer", "lift")


@dataclass
class ReportFigure:
    id: str
    title: str
    caption: str
    figure: Any  # matplotlib.figure.Figure
    png: bytes = b""
    svg: str = ""


# --------------------------------------------------------------------------- entry point


def render_report(
    audit_dir: str | Path,
    out_dir: str | Path | None = None,
    scenarios_path: str | Path | None = None,
    title: str | None = None,
) -> dict[str, Path]:
    """Write ``report.html``, ``report.md``, ``figures/*.png|svg`` and ``per_class.csv`` into ``out_dir``.

    ``audit_dir`` holds ``audit.json`` (or is the file itself); ``out_dir`` defaults to it. A
    ``seeds.json`` beside ``audit.json`` (``distillab run`` with several training seeds) adds the
    seed-to-seed variance table and, in the verdict, which noise each headline effect clears; a
    ``schedules.json`` (born-again generations, assistant chains) adds their comparisons.
    Returns the paths written. The files are one set: all are built in memory, written into a
    folder beside ``out_dir`` and only then moved into place, so a failure leaves the previous
    report (or nothing) — never new figures beside an old page.
    """
    import matplotlib

    audit_path = Path(audit_dir)
    if audit_path.is_dir():
        audit_path = audit_path / "audit.json"
    audit = read_json(audit_path)
    check_audit(audit, audit_path)
    out = Path(out_dir) if out_dir is not None else audit_path.parent
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; pass --out a folder for the report")

    scenarios = load_scenarios(scenarios_path)
    seeds = load_seeds(audit_path.parent / SEEDS_FILE)
    if seeds is not None and seeds["baseline"] != baseline_arm(audit):
        raise InputError(f"{audit_path.parent / SEEDS_FILE}: compares arms with {seeds['baseline']!r} but "
                         f"{audit_path.name} with {baseline_arm(audit)!r}; re-run the audit stage or remove it")
    schedules = load_schedules(audit_path.parent / SCHEDULES_FILE)
    try:
        tables = build_tables(audit, scenarios, seeds, schedules)
    except DuplicateRow as exc:
        raise InputError(f"{audit_path}: {exc}; re-run `distillab audit` to regenerate it") from None
    recs = recommend(audit, tables, scenarios)
    dataset = _dataset_name(audit)
    title = title or ("Distillation report" + ("" if dataset == UNKNOWN_DATASET else f": {dataset}"))
    with matplotlib.rc_context(REPORT_RC):
        figures = build_figures(audit)
        for f in figures:
            _encode(f)
    header = _header(audit, audit_path)
    files: dict[str, bytes] = {}
    for f in figures:
        files[f"{FIGURES}/{f.id}.png"] = f.png
        files[f"{FIGURES}/{f.id}.svg"] = f.svg.encode("utf-8")
    files["per_class.csv"] = _per_class_csv(audit).encode("utf-8")
    verdict = verdict_items(audit, tables, recs)
    files["report.md"] = to_markdown(title, header, audit, tables, recs, figures, verdict).encode("utf-8")
    files["report.html"] = to_html(title, header, audit, tables, recs, figures, verdict).encode("utf-8")
    publish(out, files)
    written = {f"figure:{f.id}": out / FIGURES / f"{f.id}.png" for f in figures}
    written.update(per_class_csv=out / "per_class.csv", html=out / "report.html", markdown=out / "report.md")
    return written


SEEDS_FILE = "seeds.json"


def load_seeds(path: Path) -> dict | None:
    """``seeds.json`` (see distillab.audit.seeds) when present, its shape checked; None when absent."""
    if not path.exists():
        return None
    data = read_json(path)
    if not (isinstance(data, dict) and isinstance(data.get("seeds"), list) and data["seeds"]
            and all(isinstance(s, int) and not isinstance(s, bool) for s in data["seeds"])
            and isinstance(data.get("arms"), dict) and all(isinstance(v, dict) for v in data["arms"].values())
            and isinstance(data.get("paired"), list) and all(isinstance(r, dict) for r in data["paired"])
            and isinstance(data.get("baseline"), str)):
        raise InputError(f"{path}: not a seed-variance file (needs seeds, baseline, arms and paired as "
                         "distillab run writes them); re-run the audit stage or remove it")
    return data


def publish(out: Path, files: dict[str, bytes]) -> None:
    """Put ``files`` (relative path → bytes) into ``out`` as one set.

    Everything is written into a fresh folder beside ``out`` first; a write that fails (disk full,
    no permission) removes it and leaves ``out`` as it was. Then the set moves in by renames only:
    the whole folder when ``out`` is new, else ``figures/`` (so no figure of an older report stays)
    and each page file. The folder of a report that was killed is removed by the next one.
    """
    parent = out.absolute().parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    tmp = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_builds(parent, out.name)
        tmp = Path(tempfile.mkdtemp(prefix=_BUILD_PREFIX.format(name=out.name, pid=os.getpid()), dir=parent))
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
        if not out.exists():
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the report folder is the user's
            os.rename(tmp, out)
            return
        retired = tmp / ".previous"
        retired.mkdir()
        if (out / FIGURES).exists():
            os.rename(out / FIGURES, retired / FIGURES)
        if (tmp / FIGURES).exists():
            os.rename(tmp / FIGURES, out / FIGURES)
        for rel in files:
            if "/" not in rel:
                os.replace(tmp / rel, out / rel)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the report ({exc.strerror or exc})") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        for p in created:  # folders made for a report that was not written
            if not out.exists():
                try:
                    p.rmdir()
                except OSError:
                    break


def _remove_dead_builds(parent: Path, name: str) -> None:
    """Remove build folders of reports into ``name`` whose process no longer runs (killed mid-write)."""
    pattern = re.compile(re.escape(_BUILD_PREFIX.split("{pid}")[0].format(name=name)) + r"(\d+)-")
    for entry in parent.iterdir():
        m = pattern.match(entry.name)
        if m is None or not entry.is_dir():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except (PermissionError, OverflowError):
            continue


def _encode(f: ReportFigure) -> None:
    """PNG bytes and SVG text of one figure; the layout is solved once and reused by both."""
    engine = f.figure.get_layout_engine()
    if engine is not None:
        engine.execute(f.figure)
        f.figure.set_layout_engine("none")
    buf = io.BytesIO()
    f.figure.savefig(buf, format="png", dpi=FIGURE_DPI)
    f.png = buf.getvalue()
    text = io.StringIO()
    # Text stays text in the SVG (REPORT_RC): smaller, searchable, and much faster than outlining glyphs.
    f.figure.savefig(text, format="svg", metadata={"Date": None})
    f.svg = text.getvalue()


# --------------------------------------------------------------------------- header


def _dataset_name(audit: dict) -> str:
    settings = audit.get("settings") or {}
    for key in ("dataset", "dataset_name", "data"):
        if isinstance(settings.get(key), str):
            return settings[key]
    for entry in (audit.get("inputs") or {}).values():
        if isinstance(((entry or {}).get("meta") or {}).get("dataset"), str):
            return entry["meta"]["dataset"]
    return UNKNOWN_DATASET


def _header(audit: dict, audit_path: Path) -> list[tuple[str, str]]:
    settings = audit.get("settings") or {}
    teacher = meta_of(audit, "teacher").get("model") or ("teacher (model not named)" if has_teacher(audit) else "none given")
    students = ", ".join(f"{a} = {meta_of(audit, a).get('model') or '?'} · {recipe_label(audit, a)}"
                         for a in student_arms(audit))
    tiers = audit.get("tiers") or {}
    sizes = f"n = {int(audit['n']):,} rows, K = {int(audit['num_classes']):,} classes"
    if tiers:
        sizes += " (" + ", ".join(f"{t} {len((tiers.get(t) or {}).get('classes') or []):,} classes / "
                                  f"{int((tiers.get(t) or {}).get('n') or 0):,} rows" for t in TIERS if t in tiers) + ")"
    splits = [f"{k} = {v}" for k, v in settings.items() if "split" in k and not isinstance(v, (dict, list))]
    cal = audit.get("calibration") or {}
    if cal:
        first = next(iter(cal.values()))
        splits.append(f"temperature fit on {first.get('fit_split', '?')}, evaluated on {first.get('eval_split', '?')}")
    seeds = [f"{k} = {v}" for k, v in settings.items() if "seed" in k and not isinstance(v, (dict, list))]
    if not seeds:
        seeds = sorted({f"bootstrap seed = {r['seed']}" for r in audit.get("bootstrap") or [] if "seed" in r})
    return [
        ("Dataset", _dataset_name(audit)),
        ("Teacher", teacher),
        ("Students", students or "—"),
        ("Arms", ", ".join(audit["arms"])),
        ("Baseline / distilled", f"{baseline_arm(audit)} / {distilled_arm(audit) or '—'}"),
        ("Splits", "; ".join(splits) or "—"),
        ("Sizes", sizes),
        ("Tiers", f"from {support_source_text(audit)}"),
        ("Seeds", "; ".join(seeds) or "—"),
        ("Tool version", f"audit by distillab {audit.get('tool_version', '?')} (schema "
                         f"{audit.get('schema_version', '?')}); report by distillab {__version__}"),
        ("Audit file", str(audit_path)),
        ("Input fingerprints", "sha256 of every predictions file: see the Inputs table"),
    ]


# --------------------------------------------------------------------------- figures


def build_figures(audit: dict) -> list[ReportFigure]:
    """Pull the arrays each plot needs out of ``audit.json`` and draw them (no metric is computed here)."""
    arms = list(audit["arms"])
    colors = dict(zip(arms, plots.arm_colors(len(arms))))
    figs = [_reliability_figure(audit, arms, colors), _scatter_figure(audit, arms, colors),
            _tier_bars_figure(audit, arms, colors), _coverage_figure(audit, arms, colors),
            _grid_figure(audit), _per_class_figure(audit, colors), _support_figure(audit)]
    return [f for f in figs if f is not None]


def _new_figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=FIGURE_DPI, layout=layout)


def _bins(rel: dict | None) -> tuple | None:
    bins = (rel or {}).get("bins") or []
    if not bins:
        return None
    return tuple([b[k] for b in bins] for k in ("lower", "upper", "count", "accuracy", "confidence"))


def _reliability_figure(audit, arms, colors) -> ReportFigure | None:
    cal = audit.get("calibration") or {}
    panels = []  # (arm, title, raw bins, scaled bins | None)
    for arm in arms:
        ev = (cal.get(arm) or {}).get("eval") or {}
        raw_eval = _bins((ev.get("raw") or {}).get("reliability"))
        scaled = _bins((ev.get("scaled") or {}).get("reliability"))
        raw = raw_eval or _bins(audit["arms"][arm].get("reliability"))
        if raw is None:
            continue
        if raw_eval and scaled:
            title = f"{arm}: raw vs T={fmt_float(cal[arm].get('temperature'), 2)} (eval half)"
        else:
            title, scaled = f"{arm}: raw ({'eval half' if raw_eval else 'full set'})", None
        panels.append((arm, title, raw, scaled))
    if not panels:
        return None
    ncols = min(len(panels), 4)
    nrows = math.ceil(len(panels) / ncols)
    height = 2.6 * nrows + 0.3
    # Fixed margins instead of a layout engine: the panels are identical, and solving a layout for
    # dozens of axes is the slowest step of the whole report.
    fig = _new_figure(2.9 * ncols, height, layout=None)
    fig.subplots_adjust(left=0.25 / ncols, right=0.99, bottom=0.5 / height, top=1 - 0.45 / height,
                        wspace=0.12, hspace=0.55 * 2.6 / height * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True)).ravel()
    for ax, (arm, title, raw, scaled) in zip(axes, panels):
        plots.reliability_diagram(*raw, ax=ax, title=title, color=colors[arm], scaled=scaled)
    for ax in axes:
        ax.label_outer()
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6, loc="upper left")
    return ReportFigure("reliability", "Reliability diagrams",
                        "Accuracy per confidence bin (equal-width bins) against the diagonal: bars are the raw "
                        "probabilities (below the diagonal = over-confident), the black line the same rows after "
                        "temperature scaling. Grey: rows per bin (filled raw, outline scaled), relative to the "
                        "fullest bin named in each title.", fig)


def _scatter_figure(audit, arms, colors) -> ReportFigure | None:
    cal = audit.get("calibration") or {}
    names, er, nr, es, ns = [], [], [], [], []
    for arm in arms:
        ev = (cal.get(arm) or {}).get("eval") or {}
        raw, scaled = (ev.get("raw") or {}).get("overall"), (ev.get("scaled") or {}).get("overall")
        if raw is None:
            raw = audit["arms"][arm]["overall"]
        if raw.get("ece") is None or raw.get("nll") is None:
            continue
        names.append(arm)
        er.append(raw["ece"])
        nr.append(raw["nll"])
        es.append((scaled or {}).get("ece"))
        ns.append((scaled or {}).get("nll"))
    if not names:
        return None
    fig = _new_figure(7.2, 4.8)
    plots.ece_nll_scatter(names, er, nr, es, ns, ax=fig.add_subplot(), colors=[colors[a] for a in names])
    return ReportFigure("ece-nll", "ECE vs NLL, raw → temperature-scaled", scatter_caption(er, nr, es, ns), fig)


def scatter_caption(er, nr, es, ns) -> str:
    """What the arrows in the ECE-vs-NLL scatter actually do, counted from the numbers drawn."""
    moved = [(e1 - e0, n1 - n0) for e0, n0, e1, n1 in zip(er, nr, es, ns) if e1 is not None and n1 is not None]
    text = ("Each arm raw (filled circle) and after temperature scaling (open square), arrow raw → scaled; names "
            "sit right of the plot in the order of the raw points' ECE, joined to them by thin lines. ")
    if not moved:
        return text + "No arm was calibrated, so there are no arrows."
    ece_down = sum(d_e < 0 for d_e, _ in moved)
    nll_down = sum(d_n < 0 for _, d_n in moved)
    text += (f"Temperature scaling lowered ECE for {ece_down} of {len(moved)} calibrated arms and NLL for "
             f"{nll_down} of {len(moved)} (eval half): ")
    if nll_down == 0 and ece_down:
        return text + "the arrows point down and to the right or straight down."
    return text + ("an arrow is diagonal when both change — T is fitted to minimise NLL, so it moves NLL as well "
                   "as ECE; how far down versus left is each arm's own.")


def _tier_bars_figure(audit, arms, colors) -> ReportFigure:
    scopes = [s for s in SCOPES if s == "overall" or s in (audit["arms"][arms[0]].get("tiers") or {})]
    f1 = np.full((len(arms), len(scopes)), np.nan)
    lo, hi = np.full_like(f1, np.nan), np.full_like(f1, np.nan)
    base = baseline_arm(audit)
    boot = {(r["arm"], r["tier"]): r for r in bootstrap_rows(audit) if r.get("baseline") == base}
    for i, arm in enumerate(arms):
        for j, scope in enumerate(scopes):
            m = audit["arms"][arm]["overall"] if scope == "overall" else (audit["arms"][arm].get("tiers") or {}).get(scope)
            b = audit["arms"][base]["overall"] if scope == "overall" else (audit["arms"][base].get("tiers") or {}).get(scope)
            if m is None or m.get("macro_f1") is None:
                continue
            f1[i, j] = m["macro_f1"]
            r = boot.get((arm, scope))
            if r and r.get("ci_low") is not None and b and b.get("macro_f1") is not None:
                # Whisker: where the arm's score lies given the paired Δ CI, anchored at the baseline.
                lo[i, j], hi[i, j] = b["macro_f1"] + r["ci_low"], b["macro_f1"] + r["ci_high"]
    fig = _new_figure(max(6.0, 1.4 * len(scopes) + 0.3 * len(arms) * len(scopes)), 4.0)
    plots.tier_f1_bars(arms, scopes, f1, lo, hi, ax=fig.add_subplot(), colors=[colors[a] for a in arms])
    return ReportFigure("tier-f1", "Macro-F1 per tier",
                        f"Bars: macro-F1 per tier. Whiskers: {base}'s score + the 95% paired-bootstrap CI of "
                        f"Δ(arm − {base}); a whisker that reaches the {base} bar's height cannot be told apart "
                        "from the baseline.", fig)


def _coverage_figure(audit, arms, colors) -> ReportFigure | None:
    with_cov = [a for a in arms if audit["arms"][a].get("coverage")]
    if not with_cov:
        return None
    thresholds = [[r["threshold"] for r in audit["arms"][a]["coverage"]] for a in with_cov]
    cov = [[r.get("coverage") for r in audit["arms"][a]["coverage"]] for a in with_cov]
    acc = [[r.get("accuracy") for r in audit["arms"][a]["coverage"]] for a in with_cov]
    target = next((audit["arms"][a]["sla"].get("target") for a in with_cov if audit["arms"][a].get("sla")), None)
    fig = _new_figure(6.0, 4.2)
    plots.coverage_curves(with_cov, thresholds, cov, acc, target, ax=fig.add_subplot(),
                          colors=[colors[a] for a in with_cov])
    return ReportFigure("coverage", "Coverage vs accuracy",
                        "One point per confidence threshold (raw max probability ≥ threshold; labels on the first "
                        "arm). Dashed line: the accuracy SLA.", fig)


def _grid_figure(audit) -> ReportFigure | None:
    grid = audit.get("grid") or []
    if len(grid) < 2:
        return None
    ts = sorted({float(g["T"]) for g in grid})
    alphas = sorted({float(g["alpha"]) for g in grid})
    floor, head_floor = grid_floors(audit)
    panels = (("macro_f1", "macro-F1 (overall CI width decides)", True, floor),
              ("head_f1", "head F1 (head CI width: reference reading)", True, head_floor),
              ("ece", "ECE", False, None), ("nll", "NLL", False, None))
    fig = _new_figure(15.0, 3.4)
    for i, (metric, label, higher, noise) in enumerate(panels):
        values = np.full((len(alphas), len(ts)), np.nan)
        for g in grid:
            if g.get(metric) is not None:
                values[alphas.index(float(g["alpha"])), ts.index(float(g["T"]))] = g[metric]
        plots.grid_heatmap(ts, alphas, values, label, higher, noise_floor=noise, ax=fig.add_subplot(1, 4, i + 1))
    return ReportFigure("grid", "T × α grid",
                        "Each KD arm's metric at its (T, α). Red outline: within the noise floor of the best cell — "
                        "macro-F1 against the overall bootstrap CI width (this is the reading that decides), head F1 "
                        "against the head CI width (how the reference procedure reads the grid; shown for "
                        "comparison). ECE and NLL have no bootstrap, so no noise floor is marked on them.", fig)


def _per_class_figure(audit, colors) -> ReportFigure | None:
    deltas = audit.get("per_class_delta_f1") or {}
    deltas = {a: v for a, v in deltas.items() if a != "teacher"} or deltas
    if not deltas:
        return None
    support = audit.get("tier_support") or []
    order = [int(r["class"]) for r in support] or list(range(int(audit["num_classes"])))
    tiers = [r.get("tier") for r in support] if support else None
    ordered = {a: np.asarray(v, float)[order] for a, v in deltas.items()}
    fig = _new_figure(8.0, 3.8)
    plots.per_class_delta(ordered, tiers, ax=fig.add_subplot(), colors=[colors[a] for a in ordered],
                          xlabel=f"class rank by support ({support_noun(audit)}; 1 = most)")
    k = len(order)
    how = (f"{k:,} classes grouped into rank bins (mean Δ with min–max band)" if k > plots.PER_CLASS_BIN_ABOVE
           else "one point per class")
    return ReportFigure("per-class-delta", "Per-class Δ F1 by class frequency",
                        f"Δ F1 (arm − {baseline_arm(audit)}) per class, most frequent class first; {how}. "
                        "Shading marks the tiers: a lift concentrated in the head shows as points above 0 on the "
                        "left only.", fig)


def _support_figure(audit) -> ReportFigure | None:
    support = audit.get("tier_support") or []
    if not support:
        return None
    fig = _new_figure(8.0, 3.4)
    noun = support_noun(audit)
    plots.tier_support([r["count"] for r in support], [r.get("tier") for r in support], ax=fig.add_subplot(),
                       ylabel=f"{noun} per class (log)")
    return ReportFigure("tier-support", f"Support per class by rank: {noun} (the data ceiling)",
                        f"Support of each class ({noun}) in the counts the tiers were ranked by — tiers from "
                        f"{support_source_text(audit)}; log scale.", fig)


def _per_class_csv(audit: dict) -> str:
    columns = per_class_columns(audit)
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow([key for key, _ in columns])
    for rec in per_class_records(audit):
        writer.writerow(["" if rec.get(k) is None else rec[k] for k, _ in columns])
    return handle.getvalue()


# --------------------------------------------------------------------------- noise-floor note


def noise_floor_sentence(audit: dict) -> str:
    floor = audit.get("noise_floor") or {}
    if not floor:
        return ("No bootstrap was run, so no noise floor is known: treat every difference in this report as "
                "descriptive.")
    parts = ", ".join(f"{k} {fmt_float(v)}" for k, v in floor.items() if v is not None)
    return (f"Noise floor (95% paired-bootstrap CI width of macro-F1 for {distilled_arm(audit)} vs "
            f"{baseline_arm(audit)}): {parts}. A macro-F1 difference that has no CI of its own (between grid points, "
            "between candidate recipes) and is smaller than this width is labelled \"within noise floor\"; a "
            "difference with its own CI is judged by that CI, and one that contains 0 reads \"cannot be "
            "distinguished from zero at this sample size\" (absence of evidence, not evidence that the difference is zero).")


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:0 20px 60px;color:#222}
h1{font-size:24px;margin:24px 0 8px}h2{font-size:19px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:22px 0 6px}
table{border-collapse:collapse;margin:6px 0 4px;font-size:12.5px}th,td{border:1px solid #ddd;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f4f4f4}tr:target{background:#fff3b0}
td.num{text-align:right;font-variant-numeric:tabular-nums}code,.mono{font-family:ui-monospace,Menlo,monospace;
font-size:11.5px;word-break:break-all}
.note{color:#555;font-size:12.5px;margin:2px 0 10px}.scroll{overflow-x:auto}
dl.header{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dl.header dt{font-weight:600}
dl.header dd{margin:0}
.rec{border:1px solid #ccd;border-radius:6px;padding:8px 14px;margin:12px 0;background:#fafbff}
.rec dl{display:grid;grid-template-columns:max-content auto;gap:4px 12px}.rec dt{font-weight:600}.rec dd{margin:0}
a.cite{background:#eef3ff;border-radius:3px;padding:0 2px;text-decoration:none;border-bottom:1px dotted #36c}
figure{margin:16px 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#444;font-size:12.5px}
nav ul{columns:4;font-size:12.5px;margin:6px 0}nav li{break-inside:avoid}
.wrap{display:block;max-width:24ch;overflow-wrap:anywhere;word-break:break-all}td.path .wrap{max-width:36ch}
.verdict{border:2px solid #36c;background:#f5f8ff;border-radius:6px;padding:4px 14px 8px;margin:10px 0}
.verdict h2{margin:6px 0 2px;border:0;font-size:18px}.verdict dl{display:grid;grid-template-columns:max-content auto;
gap:3px 12px;margin:4px 0;font-size:13px}.verdict dt{font-weight:600}.verdict dd{margin:0}
.warnings{border:2px solid #c44e52;background:#fff4f4;border-radius:6px;padding:6px 14px;margin:12px 0}
.warnings h2{margin:4px 0;border:0;font-size:17px;color:#a12}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _frags_html(frags: list) -> str:
    out = []
    for f in frags:
        if isinstance(f, Cite):
            out.append(f'<a class="cite" href="#{_e(f.anchor)}">{_e(f.text)}</a>')
        else:
            out.append(_e(f))
    return "".join(out)


def _is_numeric(text: str) -> bool:
    return bool(text) and text.lstrip("+-[").replace(",", "").replace(".", "").replace("%", "")[:1].isdigit()


def table_html(t: Table) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for _, h in t.columns)
    rows = []
    for row in t.rows:
        cells = []
        for key, _ in t.columns:
            cell = row.cells.get(key)
            text = "" if cell is None else cell.text
            cls = (' class="mono"' if key == "sha256" else ' class="path"' if key == "path" else
                   ' class="num"' if _is_numeric(text) else "")
            body = f'<a href="#{_e(cell.href)}">{_e(text)}</a>' if cell is not None and cell.href else _e(text)
            if key in ("sha256", "path"):  # long unbroken strings wrap inside their column
                body = f'<span class="wrap">{body}</span>'

            cells.append(f"<td{cls}>{body}</td>")
        rows.append(f'<tr id="{_e(row.id)}">{"".join(cells)}</tr>')
    note = f'<p class="note">{_e(t.note)}</p>' if t.note else ""
    csv_link = (f'<p class="note">Every row: <a href="{_e(t.csv_name)}" download>{_e(t.csv_name)}</a> '
                "(beside this report).</p>" if t.csv_name else "")
    return (f'<h3 id="{_e(t.id)}">{_e(t.title)}</h3><div class="scroll"><table data-table="{_e(t.id)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{note}{csv_link}")


def _recs_html(recs: list[Recommendation]) -> str:
    out = []
    for r in recs:
        s = r.scenario
        items = "".join(f"<dt>{_e(label)}</dt><dd>{_frags_html(frags)}</dd>" for label, frags in r.items)
        out.append(f'<div class="rec" id="scenario-{_e(s["id"])}"><h3>Scenario {_e(s["id"])} — {_e(s["name"])}: '
                   f"{_e(r.recipe)}</h3><dl>{items}</dl></div>")
    return "".join(out)


def warning_texts(audit: dict) -> list[str]:
    """The audit's warnings (e.g. rows aligned by position, a temperature bound hit), as sentences."""
    return [w if isinstance(w, str) else w["message"] for w in audit.get("warnings") or []]


def _verdict_html(verdict: list, n_warnings: int) -> str:
    items = "".join(f"<dt>{_e(label)}</dt><dd>{_frags_html(frags)}</dd>" for label, frags in verdict)
    warn = (f'<p class="note"><a href="#warnings">{n_warnings} warning(s) from the audit</a> — read them before '
            "trusting the numbers.</p>" if n_warnings else "")
    return f'<section class="verdict" id="verdict"><h2>Verdict</h2>{warn}<dl>{items}</dl></section>'


def to_html(title, header, audit, tables: dict[str, Table], recs, figures: list[ReportFigure], verdict=()) -> str:
    warnings = warning_texts(audit)
    nav = [("verdict", "Verdict")] * bool(verdict) + [("warnings", "Warnings")] * bool(warnings) + [("header", "Header"), ("what-transferred", "What transferred"), ("recommendations", "Deployment"),
           ("figures", "Figures")] + [(t.id, t.title) for t in tables.values() if t.id not in SUMMARY_TABLES]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _verdict_html(verdict, len(warnings)) if verdict else "",
        (f'<div class="warnings" id="warnings" role="alert"><h2>Warnings from the audit ({len(warnings)})</h2><ul>'
         + "".join(f"<li>{_e(w)}</li>" for w in warnings) + "</ul></div>") if warnings else "",
        "<nav><ul>" + "".join(f'<li><a href="#{_e(i)}">{_e(n)}</a></li>' for i, n in nav) + "</ul></nav>",
        '<h2 id="header">Header</h2><dl class="header">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in header) + "</dl>",
        '<h2 id="what-transferred">What transferred</h2>',
        f'<p class="note">{_e(noise_floor_sentence(audit))}</p>',
    ]
    parts += [table_html(tables[t]) for t in SUMMARY_TABLES if t in tables]
    parts.append('<h2 id="recommendations">Deployment recommendations</h2>'
                 '<p class="note">Every number below links to the table row it was taken from.</p>'
                 f'<p class="note">{_e(RANKING_RULE)}</p>')
    parts.append(_recs_html(recs))
    parts.append('<h2 id="figures">Figures</h2>')
    for f in figures:
        data = base64.b64encode(f.png).decode("ascii")
        parts.append(f'<figure id="figure-{_e(f.id)}"><h3>{_e(f.title)}</h3>'
                     f'<img src="data:image/png;base64,{data}" alt="{_e(f.title)}">'
                     f"<figcaption>{_e(f.caption)}</figcaption></figure>")
    parts.append('<h2 id="tables">Tables</h2>')
    parts += [table_html(t) for t in tables.values() if t.id not in SUMMARY_TABLES]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- Markdown


_MD_ESCAPE = re.compile(r"([\\`*_\[\]|~])")


def _md(text: Any) -> str:
    """Text shown literally in Markdown: no HTML (a name "<script>" stays text) and no emphasis or links."""
    text = html.escape(str(text).replace("\r", " ").replace("\n", " "), quote=False)
    return _MD_ESCAPE.sub(r"\\\1", text)


def _frags_md(frags: list) -> str:
    return "".join(f"[{_md(f.text)}](#{f.anchor})" if isinstance(f, Cite) else _md(f) for f in frags)


def table_md(t: Table) -> str:
    lines = [f'<a id="{t.id}"></a>', "", f"### {_md(t.title)}", "",
             "| " + " | ".join(_md(h) for _, h in t.columns) + " |",
             "|" + "|".join("---" for _ in t.columns) + "|"]
    for row in t.rows:
        cells = []
        for i, (key, _) in enumerate(t.columns):
            cell = row.cells.get(key)
            text = "" if cell is None else _md(cell.text)
            if cell is not None and cell.href:
                text = f"[{text}](#{cell.href})"
            cells.append((f'<a id="{row.id}"></a>' if i == 0 else "") + text)
        lines.append("| " + " | ".join(cells) + " |")
    if t.note:
        lines += ["", f"*{_md(t.note)}*"]
    if t.csv_name:
        lines += ["", f"Every row: [{t.csv_name}]({t.csv_name})."]
    return "\n".join(lines)


def to_markdown(title, header, audit, tables: dict[str, Table], recs, figures: list[ReportFigure], verdict=()) -> str:
    out = [f"# {_md(title)}", ""]
    warnings = warning_texts(audit)
    if verdict:
        out += ['<a id="verdict"></a>', "", "## Verdict", ""]
        if warnings:
            out += [f"**{len(warnings)} warning(s) from the audit below — read them before trusting the numbers.**", ""]
        out += [f"- **{_md(label)}:** {_frags_md(frags)}" for label, frags in verdict] + [""]
    if warnings:
        out += [f"## Warnings from the audit ({len(warnings)})", ""] + [f"> **Warning:** {_md(w)}  " for w in warnings]
        out.append("")
    out += ["## Header", ""]
    out += [f"- **{k}:** {_md(v)}" for k, v in header]
    out += ["", "## What transferred", "", _md(noise_floor_sentence(audit)), ""]
    for t in SUMMARY_TABLES:
        if t in tables:
            out += [table_md(tables[t]), ""]
    out += ["## Deployment recommendations", "", "Every number below links to the table row it was taken from.", "",
            _md(RANKING_RULE), ""]
    for r in recs:
        out += [f'<a id="scenario-{_e(r.scenario["id"])}"></a>', "",
                f"### Scenario {_md(r.scenario['id'])} — {_md(r.scenario['name'])}: {_md(r.recipe)}", ""]
        out += [f"- **{label}:** {_frags_md(frags)}" for label, frags in r.items]
        out.append("")
    out += ["## Figures", ""]
    for f in figures:
        out += [f"### {_md(f.title)}", "", f"![{_md(f.title)}](figures/{f.id}.png)", "",
                f"*{_md(f.caption)}* ([SVG](figures/{f.id}.svg))", ""]
    out += ["## Tables", ""]
    for t in tables.values():
        if t.id not in SUMMARY_TABLES:
            out += [table_md(t), ""]
    return "\n".join(out) + "\n"
