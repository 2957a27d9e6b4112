"""Every table of the report, built once as data (rows of formatted cells) from ``audit.json``.

HTML and Markdown render the same :class:`Table` objects, and the deployment recommendation cites
their cells (:meth:`Table.cite`), so a number in the prose is by construction the text of a table
cell with a stable anchor — never a second computation that could drift from the table.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

TIERS = ("head", "mid", "tail")
SCOPES = ("overall",) + TIERS  # "overall" = every evaluated row
# Per-class views list every class up to this K; above it they summarise (top/bottom rows + CSV).
PER_CLASS_FULL_MAX = 200
PER_CLASS_EDGE_ROWS = 25

RECIPE_NAMES = {
    "vanilla": "vanilla",
    "kd": "KD",
    "hard_kd": "hard KD",
    "label_smoothing": "label smoothing",
    "reverse_kl": "reverse-KL KD",
    "generalized_jsd": "GKD",
    "topk_kd": "top-k KD",
    "reference_baseline": "reference",
}
REFERENCE_ROLE = "reference"  # sidecar meta role of a "what you would use instead" baseline (not a KD arm)


# --------------------------------------------------------------------------- formatting


def fmt_float(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{float(x):.{digits}f}"


def fmt_signed(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{float(x):+.{digits}f}"


def fmt_int(x: Any) -> str:
    return "—" if x is None else f"{int(x):,}"


def fmt_pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{100 * float(x):.0f}%"


def fmt_spread(x: "Spread | None") -> str:
    """A measurement as "median (min–max)"; a single recorded number (no repeats) as itself."""
    if x is None:
        return "—"
    if x.low == x.high:
        return f"{x.median:.2f}"
    return f"{x.median:.2f} ({x.low:.2f}–{x.high:.2f})"


def fmt_threshold(x: Any) -> str:
    return "none" if x is None else f"{float(x):.2f}"


def slug(text: str) -> str:
    """An anchor-safe, injective fragment of ``text``: other characters become ``~`` + hex code point + ``~``.

    Injective so that two arms whose names differ only in punctuation never share a row anchor; the
    closing ``~`` keeps the hex from running into a following letter (" a" and "\u020a" both gave "~20a").
    """
    return re.sub(r"[^A-Za-z0-9_.+-]", lambda m: f"~{ord(m.group()):x}~", str(text)) or "~"


# --------------------------------------------------------------------------- table model


@dataclass(frozen=True)
class Cell:
    text: str
    value: Any = None  # the unformatted value the text came from (for decisions and plots)
    href: str | None = None  # anchor of the row this cell was copied from, if any


@dataclass(frozen=True)
class Cite:
    """A number in prose: the text of one table cell and the anchor of its row."""

    text: str
    anchor: str
    value: Any = None


@dataclass(frozen=True)
class Spread:
    """A measurement (serving cost): median over timed repeats and their min–max.

    Measurements differ between identical runs, so decisions compare them only through the
    spread: a difference inside it is a tie (see decision.py).
    """

    median: float
    low: float
    high: float


@dataclass
class Row:
    id: str
    cells: dict[str, Cell]


class DuplicateRow(ValueError):
    """Two rows of one table got the same anchor (a malformed audit.json lists something twice)."""


@dataclass
class Table:
    id: str
    title: str
    columns: list[tuple[str, str]]  # (key, header)
    rows: list[Row] = field(default_factory=list)
    note: str = ""
    csv_name: str | None = None  # full data written beside the report when rows are a summary

    def add(self, row_key: str, /, **cells: Any) -> Row:
        row_id = f"{self.id}-{slug(row_key)}"
        if any(r.id == row_id for r in self.rows):
            raise DuplicateRow(f"two rows of the {self.title!r} table have the key {row_key!r}")
        row = Row(row_id, {k: v if isinstance(v, Cell) else Cell(str(v), v) for k, v in cells.items()})
        self.rows.append(row)
        return row

    def row(self, key: str) -> Row:
        row_id = f"{self.id}-{slug(key)}"
        for row in self.rows:
            if row.id == row_id:
                return row
        raise KeyError(f"table {self.id!r} has no row {key!r}")

    def has(self, key: str) -> bool:
        return any(r.id == f"{self.id}-{slug(key)}" for r in self.rows)

    def cite(self, key: str, column: str) -> Cite:
        row = self.row(key)
        cell = row.cells[column]
        return Cite(cell.text, row.id, cell.value)

    def value(self, key: str, column: str) -> Any:
        return self.row(key).cells[column].value


def _num(x: Any, fmt=fmt_float) -> Cell:
    return Cell(fmt(x), x)


# --------------------------------------------------------------------------- audit accessors


def baseline_arm(audit: dict) -> str:
    """The arm every Δ is taken against: settings, then Test B, then the bootstrap rows, then the first arm."""
    for candidate in (
        (audit.get("settings") or {}).get("baseline"),
        ((audit.get("transfer_tests") or {}).get("test_b") or {}).get("baseline"),
        next((r.get("baseline") for r in audit.get("bootstrap", [])), None),
    ):
        if candidate in audit["arms"]:
            return candidate
    return next((a for a in audit["arms"] if a != "teacher" and not is_reference(audit, a)),
                next(a for a in audit["arms"] if a != "teacher"))


def is_reference(audit: dict, arm: str) -> bool:
    """A reference baseline (sidecar meta ``role: reference``, e.g. TF-IDF + a linear model): shown for scale."""
    return meta_of(audit, arm).get("role") == REFERENCE_ROLE


def reference_arms(audit: dict) -> list[str]:
    return [a for a in audit["arms"] if a != "teacher" and is_reference(audit, a)]


def distilled_arm(audit: dict) -> str | None:
    """The arm the "what transferred" section compares with the baseline (None with a single student)."""
    base = baseline_arm(audit)
    for candidate in (
        (audit.get("settings") or {}).get("distilled"),
        ((audit.get("transfer_tests") or {}).get("test_b") or {}).get("distilled"),
    ):
        if candidate in audit["arms"] and candidate != base:
            return candidate
    others = [a for a in student_arms(audit) if a != base and not is_reference(audit, a)]
    kd = [a for a in others if recipe_of(audit, a).get("loss") == "kd"]
    return (kd or others or [None])[0]


def student_arms(audit: dict) -> list[str]:
    return [a for a in audit["arms"] if a != "teacher"]


def has_teacher(audit: dict) -> bool:
    return "teacher" in audit["arms"]


def meta_of(audit: dict, arm: str) -> dict:
    return ((audit.get("inputs") or {}).get(arm) or {}).get("meta") or {}


# Serving-cost metrics a scenario may constrain; both are measurements (sidecar ``measurements.serving``).
MEASURED_METRICS = ("ms_per_example", "forward_ms_per_example")


def serving_of(audit: dict, arm: str) -> tuple[dict[str, Spread], dict]:
    """An arm's serving-cost measurements and the protocol block they came from.

    ``distillab train`` records ``measurements.serving`` (median, min, max over repeats); a
    hand-written sidecar may hold the older ``serving.ms_per_example`` single number, read as a
    measurement with no spread.
    """
    meta = meta_of(audit, arm)
    block = (meta.get("measurements") or {}).get("serving") or {}
    spreads = {}
    for metric in MEASURED_METRICS:
        m = block.get(metric)
        if isinstance(m, dict) and m.get("median") is not None:
            median = float(m["median"])
            spreads[metric] = Spread(median, float(m.get("min", median)), float(m.get("max", median)))
    legacy = meta.get("serving") or {}
    if not block and legacy.get("ms_per_example") is not None:
        value = float(legacy["ms_per_example"])
        spreads["ms_per_example"] = Spread(value, value, value)
        block = legacy
    return spreads, block


# What the support counts (tier_support, tier-summary) count, by the audit's tier_source.
SUPPORT_NOUNS = {
    "train_counts": "training examples",
    "file": "evaluation rows",
    "eval_labels": "evaluation rows",
}


def support_noun(audit: dict) -> str:
    """"training examples" only when the audit ranked classes by training counts."""
    return SUPPORT_NOUNS.get(audit.get("tier_source"), "examples (source not recorded)")


def support_source_text(audit: dict) -> str:
    source = audit.get("tier_source")
    if source == "train_counts":
        return "training counts (train_counts)"
    if source == "file":
        return ("the predictions files' per-row tiers; support is counted on the evaluation rows, as no "
                "training counts were given")
    if source == "eval_labels":
        return "the evaluation labels (no training counts were given)"
    return "not recorded in audit.json"


def recipe_of(audit: dict, arm: str) -> dict:
    return meta_of(audit, arm).get("recipe") or {}


def recipe_label(audit: dict, arm: str) -> str:
    """Human name of how an arm was trained, e.g. ``KD (T=4, α=0.7)``; the arm name when unknown."""
    if arm == "teacher":
        return "teacher"
    recipe = recipe_of(audit, arm)
    if recipe.get("objectives"):  # a multi-objective arm: "KD (T=4, α=0.7) + hidden_mse ×0.5 (layers=last:1)"
        label = " + ".join(_objective_label(o) for o in recipe["objectives"])
    elif recipe.get("loss") is not None:
        label = _objective_label(recipe)
    else:
        return arm
    # Trained with fake quantization ("KD (T=4, α=0.7) QAT"), and an int8 copy of a student ("... int8"):
    # without these a post-training int8 copy and a quantization-aware one would read alike.
    return label + "".join(f" {tag}" for tag, key in (("QAT", "fake_quant"), (recipe.get("quantized"), "quantized"))
                           if recipe.get(key))


def _objective_label(recipe: dict) -> str:
    """One objective's name and settings; ``weight`` shown only when it is not 1."""
    loss = recipe.get("loss") or recipe.get("objective")
    name = RECIPE_NAMES.get(loss, loss)
    if recipe.get("weight") not in (None, 1.0):
        name += f" ×{float(recipe['weight']):g}"
    shown = {"loss", "objective", "weight", "T", "alpha", "epsilon", "kind", "fake_quant", "quantized", "backend"}
    params = []
    if recipe.get("T") is not None:
        params.append(f"T={float(recipe['T']):g}")
    if recipe.get("alpha") is not None:
        params.append(f"α={float(recipe['alpha']):g}")
    if recipe.get("epsilon") is not None:
        params.append(f"ε={float(recipe['epsilon']):g}")
    if recipe.get("kind") is not None:
        params.append(str(recipe["kind"]))
    if "objective" in recipe or loss not in RECIPE_NAMES:  # the feature objectives' settings (layers, ...)
        params += [f"{key}={value}" for key, value in recipe.items() if key not in shown]
    return f"{name} ({', '.join(params)})" if params else name


# The report's order of arm families: what an arm's objectives transfer (distillab.objectives' ``family``).
FAMILIES = ("teacher", "logits", "hidden", "attention", "relation", "self", "peer", "reference")


def family_of(audit: dict, arm: str) -> str:
    """``teacher``, ``reference``, or the family of the arm's objectives (the non-logit one when mixed)."""
    from distillab.objectives import REGISTRY

    if arm == "teacher" or is_reference(audit, arm):
        return "teacher" if arm == "teacher" else "reference"
    recipe = recipe_of(audit, arm)
    # an arm's moving average, peer or online teacher
    side = {"ema": "self", "dml_peer": "peer", "online_teacher": "peer"}.get(recipe.get("loss"))
    if side:
        return side
    names = [o["objective"] for o in recipe["objectives"]] if recipe.get("objectives") else [recipe.get("loss")]
    families = [REGISTRY[n].family for n in names if n in REGISTRY]
    return next((f for f in families if f != "logits"), "logits")


def role_of(audit: dict, arm: str) -> str:
    if arm == "teacher":
        return "teacher"
    if is_reference(audit, arm):
        return "reference baseline"
    if arm == baseline_arm(audit):
        return "baseline"
    if arm == distilled_arm(audit):
        return "distilled"
    if any(g.get("arm") == arm for g in audit.get("grid") or []):
        return "grid point"
    return "student"


def bootstrap_rows(audit: dict, metric: str = "macro_f1") -> list[dict]:
    return [r for r in audit.get("bootstrap") or [] if r.get("metric", "macro_f1") == metric]


def verdict_text(row: dict) -> str:
    """The honest wording: "significant …" only when the CI excludes 0, never "no effect".

    The audit's own ``verdict`` is used when present; the fallback follows the same rule and
    respects the metric's direction (for ECE and NLL a positive Δ is a degradation).
    """
    if row.get("verdict"):
        return str(row["verdict"])
    lo, hi = row.get("ci_low"), row.get("ci_high")
    excludes = row.get("excludes_zero")
    if excludes is None and lo is not None and hi is not None:
        excludes = lo > 0 or hi < 0
    if excludes:
        lower_better = row.get("better") == "lower" or row.get("metric") in ("ece", "nll")
        up = (row.get("median") or 0) > 0
        return "significant improvement" if up != lower_better else "significant degradation"
    return "cannot be distinguished from zero at this sample size"


# --------------------------------------------------------------------------- the tables


def build_tables(audit: dict, scenarios: list[dict] | None = None, seeds: dict | None = None,
                 schedules: dict | None = None) -> dict[str, Table]:
    """Every table of the report, in page order, keyed by anchor id.

    ``seeds``: the audit folder's ``seeds.json`` (seed-to-seed variance), when the run trained
    several seeds; its table follows the paired bootstrap's. ``schedules``: its ``schedules.json``
    (born-again generations, assistant chains), whose comparisons follow those.
    """
    from distillab.report.schedules import schedules_table

    builders = [
        _inputs_table,
        _settings_table,
        _transfer_table,
        _tier_metrics_table,
        _bootstrap_table,
        _calibration_table,
        _test_b_table,
        _coverage_table,
        _scaled_coverage_table,
        _sla_table,
        _grid_table,
        _lift_table,
        _tier_summary_table,
        _tier_support_table,
        _per_class_table,
        _candidates_table,
    ]
    tables = [b(audit) for b in builders]
    after = builders.index(_bootstrap_table) + 1
    tables[after:after] = (([] if seeds is None else [_seeds_table(seeds)])
                           + ([] if schedules is None else [schedules_table(schedules)]))
    if scenarios is not None:
        tables.append(scenarios_table(scenarios))
    return {t.id: t for t in tables if t is not None and t.rows}


def _inputs_table(audit: dict) -> Table:
    t = Table(
        "inputs",
        "Inputs and fingerprints",
        [("arm", "Arm"), ("family", "Family"), ("role", "Role"), ("model", "Model"), ("recipe", "Recipe"),
         ("params", "Params"), ("model_mb", "Weights on disk, MB"),
         ("ms", "Measured: ms / example, text → logits"), ("forward_ms", "Measured: forward pass only"),
         ("device", "Serving device"), ("sha256", "sha256"), ("path", "File")],
        note="sha256 of each predictions file as read by the audit. Serving cost is a MEASUREMENT from the file's "
        "sidecar (measurements.serving): it differs between identical runs. Median (min–max) of the timed repeats "
        "after warm-ups, at the sidecar's batch size and fixed thread count; \"text → logits\" includes "
        "tokenising and is what a scenario's ms_per_example constraint uses, \"forward pass only\" "
        "(forward_ms_per_example) is what the reference timed.",
    )
    inputs = audit.get("inputs") or {}
    # Grouped by family (what the arm transfers), in the audit's order within a family.
    for arm in sorted(audit["arms"], key=lambda a: FAMILIES.index(family_of(audit, a))):
        entry = inputs.get(arm) or {}
        meta = entry.get("meta") or {}
        spreads, serving = serving_of(audit, arm)
        t.add(
            arm,
            arm=arm,
            family=family_of(audit, arm),
            role=role_of(audit, arm),
            model=meta.get("model") or "—",
            recipe=recipe_label(audit, arm),
            params=_num(meta.get("params"), fmt_int),
            model_mb=_model_mb_cell(audit, arm),
            ms=Cell(fmt_spread(spreads.get("ms_per_example")), spreads.get("ms_per_example")),
            forward_ms=Cell(fmt_spread(spreads.get("forward_ms_per_example")), spreads.get("forward_ms_per_example")),
            device=_device_text(serving),
            sha256=Cell(entry.get("sha256") or "—", entry.get("sha256")),
            path=entry.get("path") or "—",
        )
    return t


def _device_text(serving: dict) -> str:
    device = str(serving.get("device") or "—")
    if serving.get("threads") is not None:
        device += f", {serving['threads']} thread(s)"
    if serving.get("batch_size") is not None:
        device += f", batch {serving['batch_size']}"
    return device


def _flatten(prefix: str, obj: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(f"{prefix}.{k}" if prefix else str(k), v)
    else:
        yield prefix, obj


def _settings_table(audit: dict) -> Table:
    t = Table("settings", "Audit settings", [("key", "Setting"), ("value", "Value")],
              note="Every resolved setting the audit ran with (audit.json `settings`).")
    for key, value in _flatten("", audit.get("settings") or {}):
        text = ", ".join(map(str, value)) if isinstance(value, list) else ("—" if value is None else str(value))
        t.add(key, key=key, value=Cell(text, value))
    t.add("tier_source", key="tier_source", value=str(audit.get("tier_source") or "—"))
    return t


def _transfer_table(audit: dict) -> Table | None:
    """"What transferred": one row per property, distilled arm vs baseline."""
    base, dist = baseline_arm(audit), distilled_arm(audit)
    t = Table(
        "transfer",
        "Distilled vs baseline, property by property",
        [("property", "Property"), ("measure", "Measure"), ("baseline", f"{base}"), ("distilled", f"{dist}"),
         ("diff", f"{dist} − {base} (columns)"), ("delta", "Δ: bootstrap median"), ("ci", "95% CI of Δ"),
         ("ci_width", "CI width"), ("verdict", "Verdict"), ("tscaling", "Does T-scaling reproduce it?")],
        note="Two differences: \"columns\" is the distilled column minus the baseline column; Δ is the MEDIAN of "
        "the paired bootstrap (distilled − baseline on the same resampled rows), the centre of the 95% CI beside it, "
        "so it need not equal the columns' difference. Rows without a bootstrap have no Δ and are descriptive. "
        "Test B fractions and the JS after temperature scaling are computed on the calibration eval half.",
    )
    if dist is None:
        return t
    arms = audit["arms"]
    boot = {(r["arm"], r["tier"]): r for r in bootstrap_rows(audit) if r.get("baseline") == base}
    for scope in SCOPES:
        b_m = arms[base]["overall"] if scope == "overall" else arms[base]["tiers"].get(scope)
        d_m = arms[dist]["overall"] if scope == "overall" else arms[dist]["tiers"].get(scope)
        if b_m is None or d_m is None:
            continue
        row = boot.get((dist, scope))
        t.add(
            f"capacity-{scope}",
            property=f"Capacity, {scope}",
            measure="macro-F1",
            baseline=_num(b_m.get("macro_f1")),
            distilled=_num(d_m.get("macro_f1")),
            diff=_num(_diff(d_m.get("macro_f1"), b_m.get("macro_f1")), fmt_signed),
            delta=_num(row and row.get("median"), fmt_signed),
            ci=Cell(_ci_text(row), row and (row.get("ci_low"), row.get("ci_high"))),
            ci_width=_num(row and _width(row)),
            verdict=verdict_text(row) if row else "no bootstrap for this tier",
            tscaling="no — temperature scaling never changes the argmax",
        )
    test_b = (audit.get("transfer_tests") or {}).get("test_b") or {}
    cal = audit.get("calibration") or {}
    metric_boot = {(r["arm"], r.get("metric")): r for r in audit.get("bootstrap") or []
                   if r.get("baseline") == base and r.get("tier") == "overall"}
    for metric, prop in (("ece", "Top-1 calibration"), ("nll", "Full-distribution calibration")):
        fraction = test_b.get(f"{metric}_fraction")
        row = metric_boot.get((dist, metric))
        if row is not None:  # full evaluation set, with the paired-bootstrap CI of the difference
            b_val, d_val = arms[base]["overall"].get(metric), arms[dist]["overall"].get(metric)
            t.add(f"calibration-{metric}", property=prop, measure=f"{metric.upper()} (full set)",
                  baseline=_num(b_val), distilled=_num(d_val), diff=_num(_diff(d_val, b_val), fmt_signed),
                  delta=_num(row.get("median"), fmt_signed),
                  ci=Cell(_ci_text(row), (row.get("ci_low"), row.get("ci_high"))), ci_width=_num(_width(row)),
                  verdict=verdict_text(row), tscaling=_tscaling_text(fraction, test_b.get(metric)))
            continue
        block = test_b.get(metric) or {}
        b_raw = block.get("baseline_raw", _cal_metric(cal, base, "raw", metric))
        d_raw = block.get("distilled", _cal_metric(cal, dist, "raw", metric))
        t.add(
            f"calibration-{metric}",
            property=prop,
            measure=f"{metric.upper()} (eval half)",
            baseline=_num(b_raw),
            distilled=_num(d_raw),
            diff=_num(_diff(d_raw, b_raw), fmt_signed),
            delta=Cell("—"),
            ci=Cell("—"),
            ci_width=Cell("—"),
            verdict=_direction_text(b_raw, d_raw, lower_is_better=True) + " (no CI: descriptive)",
            tscaling=_tscaling_text(fraction, test_b.get(metric)),
        )
    test_a = (audit.get("transfer_tests") or {}).get("test_a") or {}
    if not has_teacher(audit):
        t.add("fidelity", property="Teacher fidelity", measure="JS to teacher, agreement", baseline="—",
              distilled="—", diff="—", delta="—", ci="—", ci_width="—",
              verdict="not measured: no teacher predictions were given", tscaling="—")
        return t
    for scope in SCOPES:
        b_a, d_a = (test_a.get(base) or {}).get(scope), (test_a.get(dist) or {}).get(scope)
        if b_a is None or d_a is None:
            b_src = arms[base]["overall"] if scope == "overall" else arms[base]["tiers"].get(scope) or {}
            d_src = arms[dist]["overall"] if scope == "overall" else arms[dist]["tiers"].get(scope) or {}
            b_a, d_a = b_src, d_src
        for key, measure, lower in (("js_to_teacher", "JS to teacher", True), ("agreement", "top-1 agreement", False)):
            t.add(
                f"fidelity-{key}-{scope}",
                property=f"Teacher fidelity, {scope}",
                measure=measure,
                baseline=_num(b_a.get(key)),
                distilled=_num(d_a.get(key)),
                diff=_num(_diff(d_a.get(key), b_a.get(key)), fmt_signed),
                delta=Cell("—"),
                ci=Cell("—"),
                ci_width=Cell("—"),
                verdict=_direction_text(b_a.get(key), d_a.get(key), lower_is_better=lower) + " (no CI: descriptive)",
                tscaling=(_js_scaling_text(cal, base, dist, scope) if key == "js_to_teacher" else
                          "no — temperature scaling never changes the argmax, so agreement is unchanged"),
            )
    return t


def _scope_metric(cal: dict, arm: str, which: str, scope: str, metric: str) -> float | None:
    block = (((cal.get(arm) or {}).get("eval") or {}).get(which) or {})
    m = block.get("overall") if scope == "overall" else (block.get("tiers") or {}).get(scope)
    return (m or {}).get(metric)


def _js_scaling_text(cal: dict, base: str, dist: str, scope: str) -> str:
    """JS to the teacher after temperature scaling, computed by the audit on the eval half (it does change)."""
    b_raw, b_scaled = (_scope_metric(cal, base, w, scope, "js_to_teacher") for w in ("raw", "scaled"))
    d_raw = _scope_metric(cal, dist, "raw", scope, "js_to_teacher")
    if b_raw is None or b_scaled is None or d_raw is None:
        return "not computed (needs both arms calibrated, with teacher predictions)"
    moved = f"{base} + T: JS {fmt_float(b_raw)} → {fmt_float(b_scaled)}; {dist} raw {fmt_float(d_raw)} (eval half)"
    if b_scaled <= d_raw:
        return f"yes — {moved}"
    return f"{'partly' if b_scaled < b_raw else 'no'} — {moved}"


def _diff(a: Any, b: Any) -> float | None:
    return None if a is None or b is None else float(a) - float(b)


def _ci_text(row: dict | None) -> str:
    if not row or row.get("ci_low") is None:
        return "—"
    return f"[{fmt_signed(row['ci_low'])}, {fmt_signed(row['ci_high'])}]"


def _width(row: dict) -> float | None:
    if row.get("ci_width") is not None:
        return float(row["ci_width"])
    if row.get("ci_low") is None or row.get("ci_high") is None:
        return None
    return float(row["ci_high"]) - float(row["ci_low"])


def _cal_metric(cal: dict, arm: str, which: str, metric: str) -> float | None:
    try:
        return cal[arm]["eval"][which]["overall"][metric]
    except (KeyError, TypeError):
        return None


def _direction_text(base: Any, dist: Any, lower_is_better: bool) -> str:
    if base is None or dist is None:
        return "not measured"
    if dist == base:
        return "unchanged"
    better = (dist < base) if lower_is_better else (dist > base)
    return "distilled better" if better else "distilled worse"


def _tscaling_text(fraction: Any, block: dict | None = None) -> str:
    if fraction is None and block and block.get("note"):
        return "n/a — the distilled arm has no gain on this metric to reproduce (Test B)"
    if fraction is None:
        return "no Test B (needs calibration of both arms)"
    pct = fmt_pct(fraction)
    if fraction >= 1:
        return f"yes — baseline + T recovers {pct} of the distilled gain (Test B)"
    if fraction > 0:
        return f"partly — baseline + T recovers {pct} of the distilled gain (Test B)"
    return f"no — baseline + T recovers {pct} of the distilled gain (Test B)"


def _tier_metrics_table(audit: dict) -> Table:
    teacher = has_teacher(audit)
    columns = [("arm", "Arm"), ("tier", "Tier"), ("n", "n"), ("macro_f1", "Macro-F1 (tier's rows)"),
               ("macro_f1_all_rows", "Macro-F1 (all rows)"), ("accuracy", "Accuracy"),
               ("ece", "ECE"), ("nll", "NLL"), ("brier", "Brier")]
    if teacher:
        columns += [("js_to_teacher", "JS to teacher"), ("agreement", "Agreement")]
    t = Table("tier-metrics", "Per-tier metrics per arm (raw probabilities, full evaluation set)", columns,
              note="A row's tier is its true label's tier. \"Macro-F1 (tier's rows)\" is the reference procedure's "
              "per-tier score: the macro average over the tier's classes, computed on the rows whose TRUE class is "
              "in the tier only — so a row of another tier predicted as a tier class is not a false positive there. "
              "\"Macro-F1 (all rows)\" averages the same classes' F1 computed on every row (each class's F1 in "
              "the per-class table), so those false positives count; it is the lower, stricter reading. The other "
              "columns are computed on the tier's rows.")
    tiers_n = {k: (v or {}).get("n") for k, v in (audit.get("tiers") or {}).items()}
    for arm, block in audit["arms"].items():
        for scope in SCOPES:
            m = block["overall"] if scope == "overall" else (block.get("tiers") or {}).get(scope)
            if m is None:
                continue
            cells = {key: _num(m.get(key)) for key, _ in columns[3:] if key != "macro_f1_all_rows"}
            cells["macro_f1_all_rows"] = _num(m.get("macro_f1") if scope == "overall"
                                              else all_rows_tier_f1(audit, arm, scope))
            t.add(f"{arm}-{scope}", arm=arm, tier=scope,
                  n=_num(audit.get("n") if scope == "overall" else tiers_n.get(scope), fmt_int), **cells)
    return t


def all_rows_tier_f1(audit: dict, arm: str, tier: str) -> float | None:
    """A tier's macro-F1 with every row counted: the mean of its evaluated classes' all-rows F1.

    sklearn's ``f1_score(y, p, labels=tier_classes, average="macro")`` on all rows; the per-class F1
    of ``audit.json`` is computed on all rows, so the average over the tier's classes is exactly that.
    """
    info = (audit.get("tiers") or {}).get(tier) or {}
    classes = info.get("classes_evaluated", info.get("classes")) or []
    f1 = audit["arms"][arm]["per_class_f1"]
    values = [f1[c] for c in classes if f1[c] is not None]
    return sum(values) / len(values) if values and len(values) == len(classes) else None


def _bootstrap_table(audit: dict) -> Table:
    t = Table(
        "bootstrap",
        "Paired bootstrap: Δ = arm − baseline",
        [("arm", "Arm"), ("baseline", "Baseline"), ("tier", "Tier"), ("metric", "Metric"), ("median", "Median Δ"),
         ("ci", "95% CI"), ("ci_low", "CI low"), ("ci_high", "CI high"), ("ci_width", "CI width"),
         ("verdict", "Verdict"), ("n_resamples", "Resamples"), ("seed", "Seed")],
        note="Same resampled rows for both arms; \"significant\" only when the 95% CI excludes 0.",
    )
    for r in audit.get("bootstrap") or []:
        t.add(
            f"{r['arm']}-{r['tier']}-{r.get('metric', 'macro_f1')}",
            arm=r["arm"], baseline=r.get("baseline", "—"), tier=r["tier"], metric=r.get("metric", "macro_f1"),
            median=_num(r.get("median"), fmt_signed), ci=Cell(_ci_text(r), (r.get("ci_low"), r.get("ci_high"))),
            ci_low=_num(r.get("ci_low"), fmt_signed), ci_high=_num(r.get("ci_high"), fmt_signed),
            ci_width=_num(_width(r)), verdict=verdict_text(r),
            n_resamples=_num(r.get("n_resamples"), fmt_int), seed=str(r.get("seed", "—")),
        )
    return t


# (scope, metric) rows of the seed table per arm; seeds.json holds every metric in every tier.
SEED_ROWS = (("overall", "macro_f1"), ("overall", "accuracy"), ("overall", "ece"), ("overall", "nll"),
             ("head", "macro_f1"), ("mid", "macro_f1"), ("tail", "macro_f1"))
METRIC_LABELS = {"macro_f1": "macro-F1", "accuracy": "accuracy", "ece": "ECE", "nll": "NLL"}


def seed_row_key(arm: str, scope: str, metric: str) -> str:
    return f"{arm}-{scope}-{metric}"


def _seeds_table(seeds: dict) -> Table:
    """Seed-to-seed variance (``seeds.json``): mean ± sd over seeds and the seed-paired Δ vs the baseline."""
    base = seeds.get("baseline", "baseline")
    listed = [int(s) for s in seeds.get("seeds") or []]
    t = Table(
        "seeds",
        "Seed-to-seed variance",
        [("arm", "Arm"), ("metric", "Metric"), ("seeds", "Seeds"), ("n_seeds", "n seeds"),
         ("per_seed", "Per seed"), ("mean_sd", "Mean ± sd over seeds"), ("deltas", f"Δ vs {base} per seed"),
         ("mean_delta", "Mean Δ"), ("ci", "95% CI of mean Δ over seeds"), ("verdict", "Verdict (seed noise)")],
        note=f"Every arm listed was trained once per seed (the first, {listed[0] if listed else '—'}, is the primary "
        "seed: the arms of every other table); sd is the sample standard deviation (n − 1). Δ_s = metric(arm, seed s) "
        f"− metric({base}, seed s), both trained with seed s (same data order); its 95% CI over seeds is mean Δ ± "
        "t(0.975, n − 1) · sd(Δ) / √n. This is training (seed) noise; the paired bootstrap measures test-sample "
        "noise on the primary seed. A reference baseline is deterministic: one value stands for every seed. "
        "Accuracy, ECE and NLL per tier are in seeds.json.",
    )
    paired = {(r.get("arm"), r.get("tier"), r.get("metric")): r for r in seeds.get("paired") or []}
    seeds_text = ", ".join(map(str, listed))
    for arm, block in (seeds.get("arms") or {}).items():
        for scope, metric in SEED_ROWS:
            v = ((block.get("values") or {}).get(scope) or {}).get(metric)
            if v is None:
                continue
            per_seed = v.get("per_seed") or []
            mean, sd = v.get("mean"), v.get("sd")
            mean_sd = "—" if mean is None else fmt_float(mean) + ("" if sd is None else f" ± {fmt_float(sd)}")
            r = paired.get((arm, scope, metric))
            if arm == base:
                deltas, mean_delta, ci, verdict = Cell("— (baseline)"), Cell("—"), Cell("—"), "—"
            elif r is None:
                deltas, mean_delta, ci, verdict = Cell("—"), Cell("—"), Cell("—"), "not compared"
            else:
                ds = r.get("deltas") or []
                deltas = Cell(", ".join(fmt_signed(d) for d in ds) or "—", ds)
                mean_delta = _num(r.get("mean"), fmt_signed)
                ci = Cell(_ci_text(r), None if r.get("ci_low") is None else (r["ci_low"], r["ci_high"]))
                verdict = str(r.get("verdict") or "—")
            t.add(
                seed_row_key(arm, scope, metric),
                arm=arm + (" (deterministic)" if block.get("fixed") else ""),
                metric=f"{METRIC_LABELS.get(metric, metric)}, {scope}",
                seeds=Cell(seeds_text, listed),
                n_seeds=_num(len(per_seed), fmt_int),
                per_seed=Cell(", ".join(fmt_float(x) for x in per_seed), per_seed),
                mean_sd=Cell(mean_sd, (mean, sd)),
                deltas=deltas, mean_delta=mean_delta, ci=ci, verdict=verdict,
            )
    return t


def _calibration_table(audit: dict) -> Table:
    t = Table(
        "calibration",
        "Temperature scaling (fit on the cal half, evaluated on the eval half)",
        [("arm", "Arm"), ("temperature", "T"), ("fit_split", "Fit on"), ("eval_split", "Evaluated on"),
         ("ece_raw", "ECE raw"), ("ece_scaled", "ECE + T"), ("nll_raw", "NLL raw"), ("nll_scaled", "NLL + T"),
         ("macro_f1", "Macro-F1 (eval half)")],
        note="Temperature scaling leaves the argmax, hence F1 and accuracy, unchanged.",
    )
    for arm, c in (audit.get("calibration") or {}).items():
        ev = c.get("eval") or {}
        raw, scaled = (ev.get("raw") or {}).get("overall") or {}, (ev.get("scaled") or {}).get("overall") or {}
        t.add(arm, arm=arm, temperature=_num(c.get("temperature")), fit_split=str(c.get("fit_split", "—")),
              eval_split=str(c.get("eval_split", "—")), ece_raw=_num(raw.get("ece")), ece_scaled=_num(scaled.get("ece")),
              nll_raw=_num(raw.get("nll")), nll_scaled=_num(scaled.get("nll")), macro_f1=_num(raw.get("macro_f1")))
    return t


def _test_b_table(audit: dict) -> Table:
    test_b = (audit.get("transfer_tests") or {}).get("test_b") or {}
    t = Table(
        "test-b",
        "Test B: how much of the distilled arm's calibration gain does temperature scaling reproduce?",
        [("metric", "Metric"), ("baseline_raw", f"{test_b.get('baseline', 'baseline')} raw"),
         ("baseline_scaled", f"{test_b.get('baseline', 'baseline')} + T"),
         ("distilled", f"{test_b.get('distilled', 'distilled')} raw"), ("fraction", "Fraction")],
        note="Fraction = (baseline raw − baseline + T) / (baseline raw − distilled); ≥ 100% means post-hoc "
        "temperature scaling alone matches or beats what distillation did for this metric.",
    )
    for metric in ("ece", "nll"):
        block = test_b.get(metric)
        if not block and test_b.get(f"{metric}_fraction") is None:
            continue
        block = block or {}
        fraction = test_b.get(f"{metric}_fraction")
        t.add(metric, metric=metric.upper(), baseline_raw=_num(block.get("baseline_raw")),
              baseline_scaled=_num(block.get("baseline_scaled")), distilled=_num(block.get("distilled")),
              fraction=Cell("n/a: no distillation gain") if fraction is None and block.get("note")
              else _num(fraction, fmt_pct))
    return t


def _coverage_table(audit: dict) -> Table:
    t = Table(
        "coverage",
        "Coverage and selective accuracy (raw max probability ≥ threshold, full evaluation set)",
        [("arm", "Arm"), ("threshold", "Threshold"), ("coverage", "Coverage"), ("accuracy", "Accuracy on covered"),
         ("n_covered", "n covered"), ("source", "Threshold from")],
        note="Thresholds apply to the raw (uncalibrated) softmax; accuracy on few covered rows is noisy. "
        + SEARCH_NOTE,
    )
    for arm, block in audit["arms"].items():
        _coverage_rows(t, arm, coverage_rows(block))
    return t


SEARCH_NOTE = ("Below the audit's threshold grid, the SLA search adds the arm's observed confidence quantiles "
               "(rounded down to 2 decimals) down to its lowest confidence, so the lowest threshold meeting the "
               "target is found where the SLA stops holding, not at the bottom of the grid.")


def coverage_rows(block: dict) -> list[dict]:
    """The SLA search's rows (grid + confidence quantiles below it) when the audit has them, else the grid's."""
    return ((block.get("threshold_search") or {}).get("rows") or block.get("coverage") or [])


def _coverage_rows(t: Table, arm: str, rows: list[dict]) -> None:
    for r in rows:
        t.add(f"{arm}-{fmt_threshold(r['threshold'])}", arm=arm, threshold=_num(r["threshold"], fmt_threshold),
              coverage=_num(r.get("coverage")), accuracy=_num(r.get("accuracy")),
              n_covered=_num(r.get("n_covered"), fmt_int), source=str(r.get("source") or "grid"))


def _scaled_coverage_table(audit: dict) -> Table | None:
    """Coverage of the temperature-scaled arms on the calibration eval half: what a "+T" deployment thresholds."""
    cal = audit.get("calibration") or {}
    if not any(coverage_rows((c.get("eval") or {}).get("scaled") or {}) for c in cal.values()):
        return None
    t = Table(
        "coverage-scaled",
        "Coverage and selective accuracy after temperature scaling (max softmax(z / T) ≥ threshold, eval half)",
        [("arm", "Arm"), ("threshold", "Threshold"), ("coverage", "Coverage"), ("accuracy", "Accuracy on covered"),
         ("n_covered", "n covered"), ("source", "Threshold from")],
        note="T is fitted on the cal half; these rows are the eval half, which the temperature never saw. " + SEARCH_NOTE,
    )
    for arm, block in cal.items():
        _coverage_rows(t, arm, coverage_rows((block.get("eval") or {}).get("scaled") or {}))
    return t


def _sla_table(audit: dict) -> Table:
    t = Table(
        "sla",
        "Accuracy SLA: the lowest threshold whose covered accuracy meets the target",
        [("arm", "Arm"), ("target", "Target"), ("threshold", "Threshold"), ("coverage", "Coverage"),
         ("accuracy", "Accuracy"), ("n_covered", "n covered"), ("best_accuracy", "Best accuracy at any threshold")],
        note="\"none\": no threshold in the coverage table reaches the target.",
    )
    for arm, block in audit["arms"].items():
        s = block.get("sla")
        if not s:
            continue
        t.add(arm, arm=arm, target=_num(s.get("target"), fmt_threshold), threshold=_num(s.get("threshold"), fmt_threshold),
              coverage=_num(s.get("coverage")), accuracy=_num(s.get("accuracy")),
              n_covered=_num(s.get("n_covered"), fmt_int), best_accuracy=_num(s.get("best_accuracy")))
    return t


def grid_floors(audit: dict) -> tuple[float | None, float | None]:
    """(overall, head) macro-F1 bootstrap CI widths: the yardsticks the T × α grid is read against."""
    floor = audit.get("noise_floor") or {}
    return floor.get("overall"), floor.get("head")


def _grid_ranks(rows: list[dict], metric: str) -> list[int | None]:
    """1 = best (higher F1); ties share the best rank, as the audit ranks its own columns."""
    values = [g.get(metric) for g in rows]
    return [None if v is None else 1 + sum(o is not None and o > v for o in values) for v in values]


def _grid_table(audit: dict) -> Table:
    t = Table(
        "grid",
        "T × α grid (KD arms) with ranks per metric",
        [("arm", "Arm"), ("T", "T"), ("alpha", "α"), ("macro_f1", "Macro-F1"), ("rank_macro_f1", "Rank F1"),
         ("floor", "Macro-F1 vs best (overall CI width; decides)"), ("ece", "ECE"), ("rank_ece", "Rank ECE"),
         ("nll", "NLL"), ("rank_nll", "Rank NLL"), ("head_f1", "Head F1"), ("rank_head_f1", "Rank head F1"),
         ("head_floor", "Head F1 vs best (head CI width; reference reading)"), ("mid_f1", "Mid F1"),
         ("tail_f1", "Tail F1")],
    )
    rows = audit.get("grid") or []
    floor, head_floor = grid_floors(audit)
    best = max((g["macro_f1"] for g in rows if g.get("macro_f1") is not None), default=None)
    best_head = max((g["head_f1"] for g in rows if g.get("head_f1") is not None), default=None)
    head_ranks = [g.get("rank_head_f1", r) for g, r in zip(rows, _grid_ranks(rows, "head_f1"))]
    for g, head_rank in zip(rows, head_ranks):
        t.add(g["arm"], arm=g["arm"], T=Cell(f"{float(g['T']):g}", g["T"]), alpha=Cell(f"{float(g['alpha']):g}", g["alpha"]),
              floor=Cell(_floor_label(g.get("macro_f1"), best, floor)),
              head_floor=Cell(_floor_label(g.get("head_f1"), best_head, head_floor)),
              rank_head_f1=_num(head_rank, fmt_int),
              **{k: _num(g.get(k)) for k in ("macro_f1", "ece", "nll", "head_f1", "mid_f1", "tail_f1")},
              **{k: _num(g.get(k), fmt_int) for k in ("rank_macro_f1", "rank_ece", "rank_nll")})
    if rows:
        spreads = {k: _grid_spread(rows, k) for k in ("macro_f1", "head_f1", "ece", "nll")}
        t.note = (
            f"Spread across the grid: macro-F1 {fmt_float(spreads['macro_f1'])}, head F1 "
            f"{fmt_float(spreads['head_f1'])}, ECE {fmt_float(spreads['ece'])}, NLL {fmt_float(spreads['nll'])}. "
            f"Two yardsticks: the overall macro-F1 bootstrap CI width ({fmt_float(floor)}) decides — it is the "
            "uncertainty of the score being ranked, and the recommendations read every F1 against its own tier's "
            f"width; the head CI width ({fmt_float(head_floor)}) is how the reference procedure reads the grid, and "
            f"it ranks by head F1 too (shown, not deciding). Against the overall width the macro-F1 spread is {_within(spreads['macro_f1'], floor)}; "
            f"against the head width it is {_within(spreads['macro_f1'], head_floor)} (head F1 spread: "
            f"{_within(spreads['head_f1'], head_floor)})."
        )
    return t


def _grid_spread(rows: list[dict], key: str) -> float | None:
    values = [g[key] for g in rows if g.get(key) is not None]
    return max(values) - min(values) if values else None


def _within(spread: float | None, floor: float | None) -> str:
    if spread is None or floor is None:
        return "not comparable (no bootstrap width)"
    return "within the noise floor" if spread < floor else "beyond the noise floor"


def _floor_label(value: float | None, best: float | None, floor: float | None) -> str:
    """A grid point's macro-F1 against the best one: a gap smaller than the CI width is noise."""
    if value is None or best is None:
        return "—"
    if value == best:
        return "best"
    if floor is None:
        return "no noise floor (no bootstrap)"
    return "within noise floor" if best - value < floor else "below best beyond noise floor"


def _lift_table(audit: dict) -> Table | None:
    lift = audit.get("lift_table")
    if not lift:
        return None
    t = Table("lift", "Data lift vs KD lift (data confound)",
              [("quantity", "Quantity"), ("value", "Value")],
              note="Data lift = baseline − reference; KD lift = distilled − baseline; ratio = data lift / KD lift.")
    for key, label, fmt in (("reference_score", "Reference (earlier recipe)", fmt_float),
                            ("baseline_score", "Baseline", fmt_float), ("distilled_score", "Distilled", fmt_float),
                            ("data_lift", "Data lift", fmt_signed), ("kd_lift", "KD lift", fmt_signed),
                            ("ratio", "Ratio data / KD", lambda x: "—" if x is None else f"{float(x):.2f}×")):
        t.add(key, quantity=label, value=_num(lift.get(key), fmt))
    if lift.get("note"):  # the audit leaves the ratio undefined when KD lifted nothing, and says why
        t.note += f" {lift['note']}."
    return t


def _tier_summary_table(audit: dict) -> Table:
    noun = support_noun(audit)
    t = Table("tier-summary", f"Tiers: classes, evaluated rows and support ({noun} per class)",
              [("tier", "Tier"), ("classes", "Classes"), ("n", "Evaluated rows"), ("max_count", "Max support"),
               ("median_count", "Median support"), ("min_count", "Min support")],
              note=f"Tiers from {support_source_text(audit)}. Support = {noun} per class, in the counts the "
              "tiers were ranked by.")
    support = audit.get("tier_support") or []
    for tier in TIERS:
        info = (audit.get("tiers") or {}).get(tier)
        if info is None:
            continue
        counts = sorted(r["count"] for r in support if r.get("tier") == tier)
        median = None
        if counts:
            mid = len(counts) // 2
            median = counts[mid] if len(counts) % 2 else (counts[mid - 1] + counts[mid]) / 2
        t.add(tier, tier=tier, classes=_num(len(info.get("classes") or []), fmt_int), n=_num(info.get("n"), fmt_int),
              max_count=_num(counts[-1] if counts else None, fmt_int),
              median_count=Cell("—" if median is None else f"{median:,.1f}".rstrip("0").rstrip("."), median),
              min_count=_num(counts[0] if counts else None, fmt_int))
    return t


def _tier_support_table(audit: dict) -> Table:
    support = audit.get("tier_support") or []
    t = Table("tier-support", "Class support by rank", [("rank", "Rank"), ("class", "Class id"), ("name", "Class"),
                                                         ("count", f"Support ({support_noun(audit)})"), ("tier", "Tier")])
    picked = _support_ranks(support)
    if len(picked) < len(support):
        t.note = ("Top 5, the classes around each tier boundary, and the rarest 5 of "
                  f"{len(support):,} classes; every class is in the tier-support figure.")
    for r in picked:
        t.add(str(r["rank"]), rank=_num(r["rank"], fmt_int), **{"class": _num(r["class"], str)},
              name=str(r.get("name", r["class"])), count=_num(r["count"], fmt_int), tier=r.get("tier", "—"))
    return t


def _support_ranks(support: list[dict]) -> list[dict]:
    if len(support) <= 30:
        return support
    keep = set(range(5)) | set(range(len(support) - 5, len(support)))
    for i in range(1, len(support)):
        if support[i].get("tier") != support[i - 1].get("tier"):
            keep |= set(range(max(0, i - 2), min(len(support), i + 2)))
    return [support[i] for i in sorted(keep)]


def per_class_columns(audit: dict) -> list[tuple[str, str]]:
    base = baseline_arm(audit)
    delta_arms = list((audit.get("per_class_delta_f1") or {}).keys())
    cols = [("rank", "Rank"), ("class", "Class id"), ("name", "Class"), ("tier", "Tier"), ("count", "Support")]
    cols += [(f"f1:{a}", f"F1 {a}") for a in audit["arms"]]
    cols += [(f"delta:{a}", f"Δ F1 {a} − {base}") for a in delta_arms]
    return cols


def per_class_records(audit: dict) -> list[dict[str, Any]]:
    """One record per class in frequency-rank order (the CSV and the table share this)."""
    k = int(audit["num_classes"])
    classes = audit.get("classes") or [str(c) for c in range(k)]
    support = {int(r["class"]): r for r in audit.get("tier_support") or []}
    order = [int(r["class"]) for r in audit.get("tier_support") or []] or list(range(k))
    order += [c for c in range(k) if c not in support]
    deltas = audit.get("per_class_delta_f1") or {}
    records = []
    for position, c in enumerate(order, 1):
        s = support.get(c, {})
        rec = {"rank": s.get("rank", position), "class": c, "name": classes[c], "tier": s.get("tier"),
               "count": s.get("count")}
        for arm, block in audit["arms"].items():
            rec[f"f1:{arm}"] = block["per_class_f1"][c]
        for arm, values in deltas.items():
            rec[f"delta:{arm}"] = values[c]
        records.append(rec)
    return records


def _per_class_table(audit: dict) -> Table:
    columns = per_class_columns(audit)
    t = Table("per-class", "Per-class F1 in order of class frequency", columns)
    records = per_class_records(audit)
    dist = distilled_arm(audit)
    key = f"delta:{dist}" if dist and f"delta:{dist}" in records[0] else None
    if len(records) > PER_CLASS_FULL_MAX:
        t.csv_name = "per_class.csv"
        if key:
            ranked = sorted(records, key=lambda r: (-(r[key] if r[key] is not None else -math.inf), r["rank"]))
            records = ranked[:PER_CLASS_EDGE_ROWS] + ranked[-PER_CLASS_EDGE_ROWS:]
            t.note = (f"The {PER_CLASS_EDGE_ROWS} classes with the largest and the {PER_CLASS_EDGE_ROWS} with the "
                      f"smallest Δ F1 ({dist}) of {int(audit['num_classes']):,}; every class is in per_class.csv.")
        else:
            records = records[:2 * PER_CLASS_EDGE_ROWS]
            t.note = f"The {2 * PER_CLASS_EDGE_ROWS} most frequent classes; every class is in per_class.csv."
    for rec in records:
        cells = {}
        for col, _ in columns:
            v = rec.get(col)
            if col.startswith("delta:"):
                cells[col] = _num(v, fmt_signed)
            elif col.startswith("f1:"):
                cells[col] = _num(v)
            elif col in ("rank", "count"):
                cells[col] = _num(v, fmt_int)
            else:
                cells[col] = Cell("—" if v is None else str(v), v)
        t.add(f"class-{rec['class']}", **cells)
    return t


# --------------------------------------------------------------------------- deployment candidates


CANDIDATE_METRICS = ("macro_f1", "ece", "nll", "head_f1", "mid_f1", "tail_f1", "model_mb") + MEASURED_METRICS


def candidate_key(arm: str, scaled: bool) -> str:
    return f"{arm}+T" if scaled else arm


def calibration_rows(audit: dict) -> str:
    """Which rows the candidates' ECE and NLL come from: the eval half when any arm was calibrated.

    Only calibrated arms have eval-half numbers (and a "+T" row exists only there), so once one arm
    is calibrated every candidate is read on the eval half; an arm without eval-half numbers then
    has none, rather than a full-set value that would be compared with eval-half ones.
    """
    cal = audit.get("calibration") or {}
    return "eval" if any(_cal_metric(cal, arm, "raw", "ece") is not None for arm in cal) else "full"


def _candidates_table(audit: dict) -> Table:
    """The recipe shortlist the decisions choose from: every arm raw, and + T where it was calibrated.

    Each cell is copied from (and links to) the row of the table it comes from, so a decision that
    cites a candidate's number cites a number that is also in its source table.
    """
    cal = audit.get("calibration") or {}
    rows = calibration_rows(audit)
    uncalibrated = [arm for arm in audit["arms"] if rows == "eval" and _cal_metric(cal, arm, "raw", "ece") is None]
    n_eval = next((c.get("n_eval") for c in cal.values() if c.get("n_eval") is not None), None)
    if rows == "eval":
        size = f"{fmt_int(n_eval)} rows, " if n_eval is not None else ""
        where = f"the calibration eval half ({size}which no temperature was fitted on) for every candidate"
        if uncalibrated:
            where += (f"; {', '.join(uncalibrated)} {'was' if len(uncalibrated) == 1 else 'were'} not calibrated, "
                      "so the audit has no eval-half ECE or NLL for it (—) and decisions on ECE or NLL leave it out")
    else:
        where = f"all {fmt_int(audit.get('n'))} evaluated rows for every candidate (no arm was calibrated)"
    t = Table(
        "candidates",
        "Deployment candidates (recipe shortlist)",
        [("recipe", "Recipe"), ("arm", "Arm"), ("scaled", "Post-hoc T"), ("macro_f1", "Macro-F1"),
         ("ece", "ECE"), ("nll", "NLL"), ("head_f1", "Head F1"), ("mid_f1", "Mid F1"), ("tail_f1", "Tail F1"),
         ("model_mb", "Weights on disk, MB"),
         ("ms_per_example", "Measured ms / example (text → logits)"),
         ("forward_ms_per_example", "Measured ms / example (forward only)")],
        note=f"Every candidate is compared on the same rows: macro-F1 and tier F1 on all {fmt_int(audit.get('n'))} "
        f"evaluated rows (temperature scaling does not change them); ECE and NLL on {where}. Serving cost is a "
        "measurement (median and min–max over timed repeats; it differs between identical runs).",
    )
    for arm in audit["arms"]:
        calibrated = _cal_metric(cal, arm, "raw", "ece") is not None
        spreads, _ = serving_of(audit, arm)
        for scaled in (False, True) if calibrated else (False,):
            cells: dict[str, Cell] = {
                "recipe": Cell(recipe_label(audit, arm) + (" + T" if scaled else "")),
                "arm": Cell(arm),
                "scaled": Cell("yes" if scaled else "no", scaled),
            }
            overall_row = f"tier-metrics-{slug(arm)}-overall"
            cells["macro_f1"] = _copy(audit["arms"][arm]["overall"].get("macro_f1"), overall_row)
            for tier in TIERS:
                m = (audit["arms"][arm].get("tiers") or {}).get(tier) or {}
                cells[f"{tier}_f1"] = _copy(m.get("macro_f1"), f"tier-metrics-{slug(arm)}-{tier}")
            for metric in ("ece", "nll"):
                if rows == "eval":
                    value = _cal_metric(cal, arm, "scaled" if scaled else "raw", metric)
                    cells[metric] = _copy(value, f"calibration-{slug(arm)}") if calibrated else Cell("—")
                else:
                    cells[metric] = _copy(audit["arms"][arm]["overall"].get(metric), overall_row)
            cells["model_mb"] = _model_mb_cell(audit, arm, f"inputs-{slug(arm)}")
            for metric in MEASURED_METRICS:
                cells[metric] = Cell(fmt_spread(spreads.get(metric)), spreads.get(metric), f"inputs-{slug(arm)}")
            t.add(candidate_key(arm, scaled), **cells)
    return t


def _model_mb_cell(audit: dict, arm: str, href: str | None = None) -> Cell:
    """The student's weights on disk in MB (sidecar ``model_bytes``: an int8 copy's are its int8 weights)."""
    size = meta_of(audit, arm).get("model_bytes")
    if not isinstance(size, (int, float)) or isinstance(size, bool):
        return Cell("—")
    return Cell(f"{size / 1e6:.2f}", size / 1e6, href)


def _copy(value: Any, href: str) -> Cell:
    return Cell(fmt_float(value), value, href)


# --------------------------------------------------------------------------- scenarios


def scenarios_table(scenarios: list[dict]) -> Table:
    """The scenarios as configured, so every constant a recommendation uses is a table cell too."""
    t = Table("scenarios", "Deployment scenarios (configuration)",
              [("id", "Scenario"), ("name", "Name"), ("constraint", "Hard constraint"), ("bound", "Bound"),
               ("objective", "Primary"), ("secondary", "Secondary"), ("accuracy_target", "Threshold accuracy target")])
    for s in scenarios:
        constraints = s.get("constraints") or [{}]
        for i, c in enumerate(constraints):
            metric = c.get("metric") or (f"{c['significant_lift']} F1 lift" if c.get("significant_lift") else "—")
            if "max" in c:
                bound = Cell(_bound_text(c["max"]), c["max"])
                constraint = f"{metric} ≤ bound"
            elif "min" in c:
                bound = Cell(_bound_text(c["min"]), c["min"])
                constraint = f"{metric} ≥ bound"
            elif c.get("significant_lift"):
                bound, constraint = Cell("CI excludes 0"), f"{metric} over the baseline is significant"
            else:
                bound, constraint = Cell("—"), "none"
            threshold = s.get("threshold") or {}
            target = threshold.get("accuracy_target")
            t.add(f"{s['id']}-{i}", id=s["id"], name=s.get("name", ""), constraint=constraint, bound=bound,
                  objective=_goal_text(s.get("objective")), secondary=_goal_text(s.get("secondary")),
                  accuracy_target=Cell("not applicable" if not threshold else _bound_text(target), target))
    return t


def _bound_text(x: Any) -> str:
    return "—" if x is None else f"{float(x):g}"


def _goal_text(goal: dict | None) -> str:
    if not goal:
        return "—"
    return f"{goal['metric']} ({'higher' if goal.get('goal', 'max') == 'max' else 'lower'} is better)"
