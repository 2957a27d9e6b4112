"""Deployment recommendations: for each scenario, a recipe, a threshold policy, a rule and a flip.

Decisions read numbers only from the report's tables (:class:`~distillab.report.tables.Table`
cells) and cite them as :class:`~distillab.report.tables.Cite` fragments, so every number a reader
sees in a recommendation is a link to the table row it came from. Nothing here recomputes a metric.

Scenarios are data (YAML or JSON); the defaults are the reference experiment's three (A throughput-
bound triage, B regulated escalation, C long-tail monitoring).
"""

from __future__ import annotations

import copy
import math
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from distillab.errors import ConfigError
from distillab.io import load_yaml, read_json
from distillab.report.tables import (
    CANDIDATE_METRICS,
    MEASURED_METRICS,
    Cite,
    Cell,
    Spread,
    Table,
    baseline_arm,
    calibration_rows,
    candidate_key,
    distilled_arm,
    fmt_int,
    fmt_signed,
    support_noun,
)

Fragment = Union[str, Cite]

DEFAULT_SCENARIOS: list[dict] = [
    {
        "id": "A",
        "name": "High-throughput batch triage",
        "constraints": [{"metric": "ms_per_example", "max": 10.0}],
        "objective": {"metric": "macro_f1", "goal": "max"},
        "secondary": {"metric": "ms_per_example", "goal": "min"},
        "threshold": {"accuracy_target": 0.95},
        "rule": "Route each example by the argmax of {recipe} when its max probability is at least {threshold} "
        "(coverage {coverage}, accuracy {accuracy}); queue every other example for manual triage.",
        "rule_no_threshold": "Route every example by the argmax of {recipe} and spot-check: no threshold reaches "
        "accuracy {target} (the best is {best_accuracy} at threshold {best_threshold}, coverage {best_coverage}).",
        "flip_alternative": "a smaller or quantised student, measured on the same hardware",
    },
    {
        "id": "B",
        "name": "Regulated escalation review",
        "constraints": [{"metric": "ece", "max": 0.05}],
        "objective": {"metric": "nll", "goal": "min"},
        "secondary": {"metric": "macro_f1", "goal": "max"},
        "threshold": {"accuracy_target": 0.95},
        "rule": "Auto-approve a case when the max probability of {recipe} is at least {threshold} (coverage "
        "{coverage}, accuracy {accuracy}); escalate every other case to a reviewer, who sees the confidence.",
        "rule_no_threshold": "Escalate every case to a reviewer with the confidence of {recipe}: no threshold "
        "reaches accuracy {target} (the best is {best_accuracy} at threshold {best_threshold}, coverage "
        "{best_coverage}).",
        "flip_alternative": "recalibrating on a larger calibration split before shipping any model",
    },
    {
        "id": "C",
        "name": "Long-tail rare-class monitoring",
        "constraints": [{"significant_lift": "tail"}],
        "objective": {"metric": "tail_f1", "goal": "max"},
        "secondary": {"metric": "macro_f1", "goal": "max"},
        "threshold": None,
        "rule": "Use {recipe} for aggregate per-class counts only; no confidence threshold applies to this "
        "scenario.",
        "flip_alternative": "more labelled tail examples (a data change, not a recipe change)",
    },
]

# Every key a scenario may have (a typo such as "constraint" must not silently drop a constraint).
SCENARIO_KEYS = {"id", "name", "constraints", "objective", "secondary", "threshold", "rule", "rule_no_threshold",
                 "flip_alternative", "include_teacher", "include_reference"}
CONSTRAINT_KEYS = {"metric", "max", "min", "significant_lift"}
GOAL_KEYS = {"metric", "goal"}

# Placeholders a scenario's rule templates may use (filled with cited numbers).
RULE_FIELDS = ("recipe", "threshold", "coverage", "accuracy")
NO_THRESHOLD_FIELDS = ("recipe", "target", "best_accuracy", "best_threshold", "best_coverage")

_TIER_OF_METRIC = {"macro_f1": "overall", "head_f1": "head", "mid_f1": "mid", "tail_f1": "tail"}
_METRIC_NAMES = {
    "macro_f1": "macro-F1",
    "ece": "ECE",
    "nll": "NLL",
    "head_f1": "head-tier macro-F1",
    "mid_f1": "mid-tier macro-F1",
    "tail_f1": "tail-tier macro-F1",
    "ms_per_example": "latency (ms per example, text → logits)",
    "forward_ms_per_example": "forward-pass latency (ms per example)",
    "model_mb": "weights on disk (MB)",
}

# How candidates are ranked, stated once in the report beside the recommendations.
RANKING_RULE = (
    "Candidates are ranked by the scenario's primary metric, then its secondary, then ECE, then NLL, then "
    "their order in the candidates table; among F1 scores the data cannot tell apart (within the noise floor), "
    "the simplest recipe is chosen. Two candidates are told apart on the deciding metric only by the paired "
    "bootstrap CI of their difference (same resampled rows): when the CI of the best minus the runner-up contains 0 "
    "it is a tie, and the tie goes to the simplest recipe — the baseline (vanilla) first, then the distilled arm, "
    "then grid points; within one arm the candidates' order (so vanilla + T before vanilla when it calibrates "
    "better). The CI that decided is shown with each recommendation. Serving cost is a measurement that differs between identical runs, so it "
    "never decides on noise: one candidate is faster than another only when its whole min–max spread lies "
    "below the other's (a difference inside the spread is a tie, and the next key decides), and a latency "
    "bound fails a candidate only when even its fastest timed repeat is over it."
)


# --------------------------------------------------------------------------- scenario config


def load_scenarios(path: str | Path | None) -> list[dict]:
    """Scenarios from a YAML/JSON file (a list, or ``{"scenarios": [...]}``); the defaults when ``path`` is None."""
    if path is None:
        return validate_scenarios(copy.deepcopy(DEFAULT_SCENARIOS), where="default scenarios")
    path = Path(path)
    if path.suffix.lower() != ".json":
        data = load_yaml(path, ConfigError)  # no aliases, UTF-8 only, one line naming the file
    else:
        data = read_json(path)  # UTF-8, valid JSON, readable: one line naming the file
    scenarios = data.get("scenarios") if isinstance(data, dict) else data
    return validate_scenarios(scenarios, where=str(path))


def validate_scenarios(scenarios: Any, where: str = "scenarios") -> list[dict]:
    """Check every scenario and report every problem at once (ConfigError)."""
    if not isinstance(scenarios, list) or not scenarios:
        raise ConfigError(f"{where}: expected a non-empty list of scenarios (or a mapping with key 'scenarios')")
    problems: list[str] = []
    seen: set[str] = set()
    metrics = ", ".join(CANDIDATE_METRICS)
    for i, s in enumerate(scenarios):
        at = f"{where}: scenario {i + 1}"
        if not isinstance(s, dict):
            problems.append(f"{at}: must be a mapping")
            continue
        if not s.get("id"):
            problems.append(f"{at}: missing 'id'")
        elif str(s["id"]) in seen:
            problems.append(f"{at}: duplicate id {s['id']!r}")
        seen.add(str(s.get("id")))
        for key in sorted(set(s) - SCENARIO_KEYS, key=str):
            problems.append(f"{at}: unknown key {key!r} (known: {', '.join(sorted(SCENARIO_KEYS))})")
        if not isinstance(s.get("constraints") or [], list):
            problems.append(f"{at}: 'constraints' must be a list")
            continue
        for j, c in enumerate(s.get("constraints") or []):
            if isinstance(c, dict) and set(c) - CONSTRAINT_KEYS:
                problems.append(f"{at}: constraints[{j}] has unknown key(s) {', '.join(sorted(map(str, set(c) - CONSTRAINT_KEYS)))}")
            if not isinstance(c, dict):
                problems.append(f"{at}: constraint {j + 1} must be a mapping")
            elif "significant_lift" in c:
                if c["significant_lift"] not in ("overall", "head", "mid", "tail"):
                    problems.append(f"{at}: significant_lift must be overall, head, mid or tail, got {c['significant_lift']!r}")
            elif c.get("metric") not in CANDIDATE_METRICS:
                problems.append(f"{at}: constraint metric must be one of {metrics}, got {c.get('metric')!r}")
            elif ("max" in c) == ("min" in c):
                problems.append(f"{at}: constraint on {c['metric']} needs exactly one numeric 'max' or 'min'")
            elif not _finite_number(c.get("max", c.get("min"))):
                key = "max" if "max" in c else "min"
                problems.append(f"{at}: constraints[{j}].{key} must be a finite number, got {c[key]!r}")
        for key in ("objective", "secondary"):
            goal = s.get(key)
            if goal is None and key == "secondary":
                continue
            if isinstance(goal, dict) and set(goal) - GOAL_KEYS:
                problems.append(f"{at}: '{key}' has unknown key(s) {', '.join(sorted(map(str, set(goal) - GOAL_KEYS)))}")
            if not isinstance(goal, dict) or goal.get("metric") not in CANDIDATE_METRICS:
                problems.append(f"{at}: '{key}' must be {{metric: one of {metrics}, goal: max|min}}")
            elif goal.get("goal", "max") not in ("max", "min"):
                problems.append(f"{at}: '{key}.goal' must be max or min, got {goal.get('goal')!r}")
        threshold = s.get("threshold")
        if threshold is not None:
            target = threshold.get("accuracy_target") if isinstance(threshold, dict) else None
            if isinstance(threshold, dict) and set(threshold) - {"accuracy_target"}:
                problems.append(f"{at}: 'threshold' takes only accuracy_target")
            if not _finite_number(target) or not 0 < target <= 1:
                problems.append(f"{at}: 'threshold' must be null or {{accuracy_target: a number in (0, 1]}}")
        for key, allowed in (("rule", RULE_FIELDS if threshold else ("recipe",)),
                             ("rule_no_threshold", NO_THRESHOLD_FIELDS)):
            template = s.get(key, "")
            if not isinstance(template, str):
                problems.append(f"{at}: '{key}' must be a string")
                continue
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
            except ValueError as exc:
                problems.append(f"{at}: '{key}' is not a valid template ({exc})")
                continue
            for name in sorted(names - set(allowed)):
                problems.append(f"{at}: '{key}' uses unknown placeholder {{{name}}}; available: {', '.join(allowed)}")
    if problems:
        raise ConfigError("; ".join(problems))
    out = []
    for s in scenarios:
        merged = {"name": str(s["id"]), "constraints": [], "secondary": None, "threshold": None,
                  "rule": "Use {recipe}.", "flip_alternative": "another recipe"}
        merged.update(s)
        if merged["threshold"] and "rule_no_threshold" not in merged:
            merged["rule_no_threshold"] = ("Use {recipe} without a threshold: none reaches accuracy {target} "
                                           "(the best is {best_accuracy} at threshold {best_threshold}).")
        out.append(merged)
    return out


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# --------------------------------------------------------------------------- recommendations


@dataclass
class Recommendation:
    scenario: dict
    candidate: str | None  # key of the chosen row in the candidates table
    recipe: str  # human label, or "none"
    feasible: bool
    items: list[tuple[str, list[Fragment]]] = field(default_factory=list)  # (label, sentence fragments)


def recommend(audit: dict, tables: dict[str, Table], scenarios: list[dict]) -> list[Recommendation]:
    """One recommendation per scenario, every number cited from ``tables``.

    The paired CIs that decided between candidates go into a ``decisions`` table added to ``tables``,
    so they are cited like every other number.
    """
    decisions = Table(
        "decisions", "Paired comparisons behind the recommendations",
        [("scenario", "Scenario"), ("metric", "Deciding metric"), ("a", "Best"), ("b", "Compared with"),
         ("median", "Δ median (best − other)"), ("ci", "95% CI of Δ"), ("outcome", "Outcome"), ("rows", "Rows"),
         ("n_resamples", "Resamples")],
        note="Paired bootstrap of the difference between two candidates on the same resampled rows "
        "(audit.json candidate_bootstrap). A CI that contains 0 is a tie: the data cannot tell them apart, and the "
        "ranking rule's simplest recipe is chosen.")
    tables["decisions"] = decisions
    recs = [_recommend_one(audit, tables, s) for s in scenarios]
    if not decisions.rows:
        del tables["decisions"]
    return recs


def _candidates(tables: dict[str, Table], scenario: dict) -> list[str]:
    table = tables.get("candidates")
    if table is None:
        return []
    keys = []
    for row in table.rows:
        arm = row.cells["arm"].value if row.cells["arm"].value is not None else row.cells["arm"].text
        if arm == "teacher" and not scenario.get("include_teacher"):
            continue
        if _reference_arm(tables, arm) and not scenario.get("include_reference"):
            continue
        keys.append(candidate_key(arm, bool(row.cells["scaled"].value)))
    return keys


def _reference_arm(tables: dict[str, Table], arm: str) -> bool:
    roles = tables.get("inputs")
    return roles is not None and roles.has(arm) and roles.row(arm).cells["role"].text == "reference baseline"


def _left_out(tables: dict[str, Table], scenario: dict) -> list[Fragment] | None:
    """Every arm of the candidates table that this scenario does not consider, and why."""
    table = tables.get("candidates")
    if table is None:
        return None
    reasons = []
    for arm in dict.fromkeys(r.cells["arm"].text for r in table.rows):
        if arm == "teacher" and not scenario.get("include_teacher"):
            reasons.append("teacher (the model being distilled, not a deployable student; set include_teacher to "
                           "consider it)")
        elif _reference_arm(tables, arm) and not scenario.get("include_reference"):
            reasons.append(f"{arm} (a reference baseline, shown for scale; set include_reference to consider it)")
    return ["Not candidates here: " + "; ".join(reasons) + "."] if reasons else None


def _arm(tables: dict[str, Table], key: str) -> str:
    return tables["candidates"].row(key).cells["arm"].text


def _value(tables: dict[str, Table], key: str, metric: str) -> float | None:
    """A candidate's number; for a measurement, its median (shown, never compared directly)."""
    v = tables["candidates"].value(key, metric)
    if isinstance(v, Spread):
        v = v.median
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _spread(tables: dict[str, Table], key: str, metric: str) -> Spread | None:
    v = tables["candidates"].value(key, metric)
    return v if isinstance(v, Spread) else None


def _show(tables: dict[str, Table], key: str, metric: str) -> list[Fragment]:
    """A candidate's value in prose: the cited number, or for a measurement a link to its row.

    A measurement's number changes between identical runs; the recommendation text must not.
    """
    if metric in MEASURED_METRICS:
        return ["measured; see ", tables["candidates"].cite(key, "recipe")]
    return [_cite(tables, key, metric)]


def _faster_count(tables: dict[str, Table], key: str, metric: str, higher: bool) -> int:
    """How many candidates are measurably better: their whole spread beats this one's (a noise-free rank)."""
    me = _spread(tables, key, metric)
    if me is None:
        return len(tables["candidates"].rows)
    count = 0
    for row in tables["candidates"].rows:
        other = row.cells[metric].value
        if isinstance(other, Spread) and (other.low > me.high if higher else other.high < me.low):
            count += 1
    return count


def _cite(tables: dict[str, Table], key: str, metric: str) -> Cite:
    return tables["candidates"].cite(key, metric)


def _recipe(tables: dict[str, Table], key: str) -> str:
    return tables["candidates"].row(key).cells["recipe"].text


def _bootstrap_key(arm: str, tier: str) -> str:
    return f"{arm}-{tier}-macro_f1"


def _sort_key(tables, key: str, scenario: dict):
    """Objective, then secondary, then ECE and NLL (a calibrated tie beats an uncalibrated one)."""
    parts = []
    for goal in (scenario["objective"], scenario.get("secondary"), {"metric": "ece", "goal": "min"},
                 {"metric": "nll", "goal": "min"}):
        if not goal:
            continue
        higher = goal.get("goal", "max") == "max"
        if goal["metric"] in MEASURED_METRICS:  # ties inside the measured spread: the next key decides
            parts.append(_faster_count(tables, key, goal["metric"], higher))
            continue
        v = _value(tables, key, goal["metric"])
        if v is None:
            parts.append(math.inf)
        else:
            parts.append(-v if higher else v)
    return tuple(parts)


def _recommend_one(audit: dict, tables: dict[str, Table], s: dict) -> Recommendation:
    scen_table = tables["scenarios"]
    candidates = _candidates(tables, s)
    base = baseline_arm(audit)
    items: list[tuple[str, list[Fragment]]] = []
    notes: list[list[Fragment]] = []

    feasible = list(candidates)
    failed: list[tuple[int, dict]] = []  # constraints that emptied the set
    for i, c in enumerate(s["constraints"]):
        bound = scen_table.cite(f"{s['id']}-{i}", "bound")
        if "significant_lift" in c:
            tier = c["significant_lift"]
            boot = tables.get("bootstrap")
            passing = [k for k in feasible if boot is not None and boot.has(_bootstrap_key(_arm(tables, k), tier))
                       and _excludes_zero_up(boot, _arm(tables, k), tier)]
        else:
            known = [k for k in feasible if _value(tables, k, c["metric"]) is not None]
            if not known:
                notes.append([f"The constraint on {_METRIC_NAMES[c['metric']]} (", bound,
                              ") cannot be checked: no candidate reports it (for latency, the predictions' sidecar "
                              "needs measurements.serving, which `distillab train` writes)."])
                continue
            if len(known) < len(feasible):
                missing = sorted({_arm(tables, k) for k in feasible if k not in known})
                notes.append([f"Excluded because {_METRIC_NAMES[c['metric']]} is unknown: {', '.join(missing)}."])
            passing = [k for k in known if _meets_constraint(tables, k, c)]
        dropped = [k for k in (feasible if "significant_lift" in c else known) if k not in passing]
        if dropped and passing:
            what = (f"a significant {c['significant_lift']} F1 lift" if "significant_lift" in c
                    else f"{_METRIC_NAMES[c['metric']]} {'≤' if 'max' in c else '≥'} ")
            notes.append([f"Left out for failing {what}", *([bound] if "significant_lift" not in c else []),
                          ": " + ", ".join(_recipe(tables, k) for k in dropped) + "."])
        if not passing:
            failed.append((i, c))
        feasible = passing

    left_out = _left_out(tables, s)
    if left_out:
        notes.append(left_out)
    ranked = sorted(feasible, key=lambda k: _sort_key(tables, k, s))
    if not ranked:
        rec = _infeasible(audit, tables, s, candidates, failed, base)
        rec.items.extend(("Note", n) for n in notes)
        return rec

    decided = _decide_on_ci(audit, tables, s, ranked)
    if decided is not None:
        chosen, decision = decided
        width = None
    else:  # an audit.json without candidate_bootstrap: fall back to the noise-floor reading
        chosen, width = _simplest_within_noise(audit, tables, s, ranked)
        decision = None
    arm = _arm(tables, chosen)
    recipe = _recipe(tables, chosen)
    items.append(("Recipe", [f"{recipe} (arm {arm})."]))
    items.append(("Why", _why(tables, s, chosen, best=ranked[0], width=width, tie=decision is not None)))
    if decision:
        items.append(("Decided by", decision))
    policy, rule_values = _threshold_policy(tables, s, chosen)
    if policy:
        items.append(("Threshold", policy))
    items.append(("Rule", _fill(s["rule_no_threshold"] if rule_values.get("_none") else s["rule"],
                                {"recipe": recipe, **rule_values})))
    items.append(("Flip", _flip(tables, s, chosen, candidates)))
    noise = None if chosen != ranked[0] or decision else _noise_note(tables, s, chosen, ranked, width)
    if noise:
        items.append(("Noise floor", noise))
    items.extend(("Note", n) for n in notes)
    return Recommendation(s, chosen, recipe, True, items)


def _meets(value: float, c: dict) -> bool:
    return value <= c["max"] if "max" in c else value >= c["min"]


def _meets_constraint(tables, key: str, c: dict) -> bool:
    """A measurement fails a bound only when its whole spread is past it (noise never fails it)."""
    spread = _spread(tables, key, c["metric"])
    if spread is not None:
        return spread.low <= c["max"] if "max" in c else spread.high >= c["min"]
    value = _value(tables, key, c["metric"])
    return value is not None and _meets(value, c)


def _borderline(tables, key: str, c: dict) -> bool:
    """The bound lies inside the measured spread: met, but only by some of the timed repeats."""
    spread = _spread(tables, key, c["metric"])
    bound = c.get("max", c.get("min"))
    return spread is not None and spread.low <= bound <= spread.high and spread.low != spread.high


def _excludes_zero_up(boot: Table, arm: str, tier: str) -> bool:
    low = boot.value(_bootstrap_key(arm, tier), "ci_low")
    return low is not None and low > 0


def _why(tables, s: dict, chosen: str, best: str, width: Cite | None, tie: bool = False) -> list[Fragment]:
    goal = s["objective"]
    name = _METRIC_NAMES[goal["metric"]]
    if chosen == best:
        frags: list[Fragment] = [f"Best {name} (", *_show(tables, chosen, goal["metric"]),
                                 ") among the candidates that meet every constraint"]
    elif tie:
        frags = [f"{_recipe(tables, best)} has the best {name} point estimate (", _cite(tables, best, goal["metric"]),
                 f"), but the paired bootstrap cannot tell it from {_recipe(tables, chosen)} (",
                 _cite(tables, chosen, goal["metric"]), "): a tie, so the simpler recipe is recommended"]
    else:
        frags = [f"{_recipe(tables, best)} has the best {name} (", _cite(tables, best, goal["metric"]),
                 f") but {_recipe(tables, chosen)} (", _cite(tables, chosen, goal["metric"]),
                 ") is within the noise floor of it (CI width ", width, ") and not significantly different, so "
                 "the simpler recipe is recommended"]
    for i, c in enumerate(s["constraints"]):
        bound = tables["scenarios"].cite(f"{s['id']}-{i}", "bound")
        if "significant_lift" in c:
            tier = c["significant_lift"]
            row = _bootstrap_key(_arm(tables, chosen), tier)
            if tables.get("bootstrap") is not None and tables["bootstrap"].has(row):
                frags += [f"; its {tier} lift over the baseline has confidence interval ", tables["bootstrap"].cite(row, "ci")]
            continue
        value = _value(tables, chosen, c["metric"])
        if value is None:
            continue
        if c["metric"] in MEASURED_METRICS:
            frags += [f"; measured {_METRIC_NAMES[c['metric']]} within the bound ", bound]
            if _borderline(tables, chosen, c):
                frags.append(" (borderline: the bound lies inside its measured min–max spread)")
            continue
        frags += [f"; {_METRIC_NAMES[c['metric']]} ", _cite(tables, chosen, c["metric"]),
                  " ≤ " if "max" in c else " ≥ ", bound]
    frags.append(".")
    return frags


def _threshold_policy(tables, s: dict, chosen: str) -> tuple[list[Fragment] | None, dict[str, Any]]:
    """The lowest coverage-table threshold whose covered accuracy meets the scenario's target."""
    if not s.get("threshold"):
        return [f"Not applicable to scenario {s['id']} (no confidence threshold is used)."], {}
    target = tables["scenarios"].cite(f"{s['id']}-0", "accuracy_target")
    arm = _arm(tables, chosen)
    scaled = bool(tables["candidates"].value(chosen, "scaled"))
    # A "+T" recipe thresholds its scaled probabilities: use their coverage when the audit has it.
    scaled_cov = tables.get("coverage-scaled") if scaled else None
    scaled_rows = [r for r in (scaled_cov.rows if scaled_cov else []) if r.cells["arm"].text == arm]
    cov = tables.get("coverage")
    rows = scaled_rows or [r for r in (cov.rows if cov else []) if r.cells["arm"].text == arm]
    if not rows:
        return [f"No coverage table for {arm}, so no threshold can be set."], {"_none": True, "target": target,
                                                                             "best_accuracy": "—", "best_threshold": "—",
                                                                             "best_coverage": "—"}
    if scaled_rows:
        scaled_note = (" Thresholds apply to the temperature-scaled probabilities (coverage measured on the eval "
                       "half, which the temperature was not fitted on).")
    elif scaled:
        scaled_note = (" Thresholds apply to the raw softmax of the arm (the audit has no coverage after "
                       "temperature scaling).")
    else:
        scaled_note = ""
    meeting = [r for r in rows if r.cells["accuracy"].value is not None and r.cells["accuracy"].value >= s["threshold"]["accuracy_target"]]
    if meeting:
        r = min(meeting, key=lambda r: r.cells["threshold"].value)
        c = {k: Cite(r.cells[k].text, r.id, r.cells[k].value) for k in ("threshold", "coverage", "accuracy", "n_covered")}
        return ([f"Lowest threshold of {arm} whose covered accuracy reaches ", target, ": ", c["threshold"],
                 " — coverage ", c["coverage"], ", accuracy ", c["accuracy"], ", ", c["n_covered"], " rows covered. ",
                 *_search_floor(rows, r), scaled_note.lstrip()],
                {"threshold": c["threshold"], "coverage": c["coverage"], "accuracy": c["accuracy"]})
    best = max((r for r in rows if r.cells["accuracy"].value is not None),
               key=lambda r: (r.cells["accuracy"].value, -r.cells["threshold"].value), default=None)
    if best is None:
        return [f"No threshold of {arm} covers any row."], {"_none": True, "target": target, "best_accuracy": "—",
                                                           "best_threshold": "—", "best_coverage": "—"}
    c = {k: Cite(best.cells[k].text, best.id, best.cells[k].value) for k in ("threshold", "coverage", "accuracy")}
    return ([f"None: no threshold of {arm} reaches covered accuracy ", target, "; the best is ", c["accuracy"],
             " at threshold ", c["threshold"], " (coverage ", c["coverage"], ")." + scaled_note],
            {"_none": True, "target": target, "best_accuracy": c["accuracy"], "best_threshold": c["threshold"],
             "best_coverage": c["coverage"]})


def _search_floor(rows: list, chosen) -> list[Fragment]:
    """Where the threshold search stopped: the next lower threshold that fails, or the floor it hit."""
    lower = [r for r in rows if r.cells["threshold"].value < chosen.cells["threshold"].value]
    if lower:
        r = max(lower, key=lambda r: r.cells["threshold"].value)
        return ["Below it the SLA stops holding: at ", Cite(r.cells["threshold"].text, r.id, r.cells["threshold"].value),
                " covered accuracy is ", Cite(r.cells["accuracy"].text, r.id, r.cells["accuracy"].value), ". "]
    if any(r.cells["source"].text != "grid" for r in rows if "source" in r.cells):
        return ["The search hit its floor: this is the lowest threshold searched (at or below the lowest observed "
                "confidence), so the SLA holds at every threshold — no lower one can cover more rows. "]
    return ["The search hit its floor: this is the bottom of the audit's threshold grid, not where the SLA stops "
            "holding (an audit.json without a threshold search; re-run `distillab audit` to search below the grid). "]


def _fill(template: str, values: dict[str, Any]) -> list[Fragment]:
    """Split a rule template into text and cited fragments (placeholders become citations)."""
    frags: list[Fragment] = []
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        if literal:
            frags.append(literal)
        if name is None:
            continue
        if name not in values:
            raise ConfigError(f"scenario rule uses unknown placeholder {{{name}}}; available: "
                              f"{', '.join(sorted(k for k in values if not k.startswith('_')))}")
        frags.append(values[name])
    return frags


def _flip(tables, s: dict, chosen: str, candidates: list[str]) -> list[Fragment]:
    """The constraint that would flip the decision, its switch point (the chosen value) and the alternative."""
    for i, c in enumerate(s["constraints"]):
        if "significant_lift" in c:
            continue
        value = _value(tables, chosen, c["metric"])
        if value is None:
            continue
        name = _METRIC_NAMES[c["metric"]]
        if c["metric"] in MEASURED_METRICS:
            return _flip_measured(tables, s, chosen, candidates, i, c)
        # Tighten this bound past the chosen value: who still qualifies (meeting every other constraint)?
        tighter = {**c, ("max" if "max" in c else "min"): value}
        alt = [k for k in candidates if k != chosen and (v := _value(tables, k, c["metric"])) is not None
               and _meets(v, tighter) and v != value and _meets_others(tables, s, k, i)]
        alt.sort(key=lambda k: _sort_key(tables, k, s))
        frags: list[Fragment] = [f"If the {name} bound tightened past ", _cite(tables, chosen, c["metric"]),
                                 f" ({'below' if 'max' in c else 'above'} the chosen recipe's value), it would no "
                                 "longer qualify; "]
        if alt:
            frags += ["the alternative would be ", f"{_recipe(tables, alt[0])} ({name} ",
                      _cite(tables, alt[0], c["metric"]), ")."]
        else:
            frags += [f"no measured candidate would remain — the alternative is {s['flip_alternative']}."]
        return frags
    goal = s["objective"]
    others = [k for k in candidates if _arm(tables, k) != _arm(tables, chosen)]
    others = [k for k in others if _meets_others(tables, s, k, None)]
    others.sort(key=lambda k: _sort_key(tables, k, s))
    if not others:
        return [f"No other candidate meets this scenario's constraints; the alternative is {s['flip_alternative']}."]
    runner = others[0]
    if goal["metric"] in MEASURED_METRICS:
        faster = "faster" if goal.get("goal", "max") == "min" else "slower"
        return ["If ", tables["candidates"].cite(runner, "recipe"), f" were measured {faster} than ",
                tables["candidates"].cite(chosen, "recipe"), f" beyond both spreads on {_METRIC_NAMES[goal['metric']]}, "
                "the decision would flip to it."]
    return [f"If {_METRIC_NAMES[goal['metric']]} of {_recipe(tables, chosen)} fell to ",
            _cite(tables, runner, goal["metric"]), f" (the runner-up's value), the decision would flip to "
            f"{_recipe(tables, runner)}."]


def _flip_measured(tables, s: dict, chosen: str, candidates: list[str], i: int, c: dict) -> list[Fragment]:
    """The flip on a serving-cost bound, worded without the measured number (it changes run to run).

    The alternative must be measurably better (its whole spread beyond the chosen one's), so a
    re-measurement cannot swap it for another.
    """
    name = _METRIC_NAMES[c["metric"]]
    mine = _spread(tables, chosen, c["metric"])
    better = [k for k in candidates if k != chosen and (v := _spread(tables, k, c["metric"])) is not None
              and (v.high < mine.low if "max" in c else v.low > mine.high) and _meets_others(tables, s, k, i)]
    better.sort(key=lambda k: _sort_key(tables, k, s))
    edge = "fell below even the fastest" if "max" in c else "rose above even the slowest"
    frags: list[Fragment] = [f"If the {name} bound {edge} timed repeat of ",
                             tables["candidates"].cite(chosen, "recipe"), ", it would no longer qualify; "]
    if better:
        frags += ["the alternative would be ", tables["candidates"].cite(better[0], "recipe"),
                  f", measurably {'faster' if 'max' in c else 'slower'} (spreads do not overlap)."]
    else:
        frags += ["no candidate is measurably faster (their spreads overlap or lie above) — the alternative is "
                  f"{s['flip_alternative']}."]
    return frags


def _meets_others(tables, s: dict, key: str, skip: int | None) -> bool:
    for j, c in enumerate(s["constraints"]):
        if j == skip:
            continue
        if "significant_lift" in c:
            boot = tables.get("bootstrap")
            row = _bootstrap_key(_arm(tables, key), c["significant_lift"])
            if boot is None or not boot.has(row) or not _excludes_zero_up(boot, _arm(tables, key), c["significant_lift"]):
                return False
            continue
        if not _meets_constraint(tables, key, c):
            return False
    return True


# Simpler recipes first when the data cannot tell candidates apart (lower = simpler).
_SIMPLICITY = {"baseline": 0, "distilled": 1, "grid point": 2, "student": 2, "teacher": 3}


def _noise_width(audit, tables, tier: str) -> Cite | None:
    """The noise floor for an F1 objective: the distilled arm's bootstrap CI width on that tier."""
    boot = tables.get("bootstrap")
    dist = distilled_arm(audit)
    if boot is None or dist is None or not boot.has(_bootstrap_key(dist, tier)):
        return None
    cite = boot.cite(_bootstrap_key(dist, tier), "ci_width")
    return cite if cite.value is not None else None


def _significantly_different(tables, a: str, b: str, tier: str) -> bool:
    """Only pairs involving the baseline have a paired CI; trust it when it exists."""
    arm_a, arm_b = _arm(tables, a), _arm(tables, b)
    boot = tables.get("bootstrap")
    if arm_a == arm_b or boot is None:
        return False
    for arm, other in ((arm_a, arm_b), (arm_b, arm_a)):
        key = _bootstrap_key(arm, tier)
        if boot.has(key) and boot.row(key).cells["baseline"].text == other:
            lo, hi = boot.value(key, "ci_low"), boot.value(key, "ci_high")
            return lo is not None and hi is not None and (lo > 0 or hi < 0)
    return False


def _simplicity(tables, key: str) -> int:
    roles = tables.get("inputs")
    if roles is None or not roles.has(_arm(tables, key)):
        return _SIMPLICITY["student"]
    return _SIMPLICITY.get(roles.row(_arm(tables, key)).cells["role"].text, _SIMPLICITY["student"])


def pair_ci(audit: dict, tables, a: str, b: str, metric: str) -> dict | None:
    """The audit's paired-bootstrap CI of candidate a − candidate b on ``metric`` (None when it has none).

    F1 metrics come from all rows and compare arms (temperature scaling leaves the argmax alone);
    ECE and NLL come from the eval half and compare candidates, raw or + T, as the candidates table does.
    """
    boot = audit.get("candidate_bootstrap") or {}
    if metric in _TIER_OF_METRIC:
        block, names, group, key = boot.get("f1"), (_arm(tables, a), _arm(tables, b)), _TIER_OF_METRIC[metric], "macro_f1"
        rows = f"all {fmt_int(audit.get('n'))} rows"
    elif metric in ("ece", "nll") and calibration_rows(audit) == "eval":
        block, names, group, key = boot.get("calibration"), (a, b), "overall", metric
        rows = "calibration eval half"
    else:
        return None
    if not block or names[0] not in block["candidates"] or names[1] not in block["candidates"]:
        return None
    i, j = block["candidates"].index(names[0]), block["candidates"].index(names[1])
    stats = ((block.get("groups") or {}).get(group) or {}).get(key)
    if not stats or stats["ci_low"][i][j] is None or stats["ci_high"][i][j] is None:
        return None
    return {"median": stats["median"][i][j], "ci_low": stats["ci_low"][i][j], "ci_high": stats["ci_high"][i][j],
            "rows": rows, "n_resamples": block.get("n_resamples")}


def _decide_on_ci(audit, tables, s: dict, ranked: list[str]) -> tuple[str, list[Fragment]] | None:
    """Best vs runner-up on the deciding metric, read through their paired CI (None: the audit has none).

    A CI containing 0 is a tie: every candidate the best cannot be told apart from is tied, and the
    simplest of them is chosen (role order, then rank). The decisive comparison is added to the
    ``decisions`` table and cited.
    """
    metric = s["objective"]["metric"]
    if metric in MEASURED_METRICS:
        return None  # measurements decide through their min–max spread (RANKING_RULE)
    best = ranked[0]
    same = (lambda k: _arm(tables, k) == _arm(tables, best)) if metric in _TIER_OF_METRIC else (lambda k: k == best)
    others = [k for k in ranked if not same(k)]
    if not others:
        return None
    runner = others[0]
    ci = pair_ci(audit, tables, best, runner, metric)
    if ci is None:
        return None
    tie = ci["ci_low"] <= 0 <= ci["ci_high"]
    chosen = best
    if tie:
        tied = [k for k in ranked if same(k) or ((c := pair_ci(audit, tables, best, k, metric)) is not None
                                                 and c["ci_low"] <= 0 <= c["ci_high"])]
        chosen = min(tied, key=lambda k: (_simplicity(tables, k), ranked.index(k)))
    table = tables["decisions"]
    row = table.add(f"{s['id']}-{best}-{runner}", scenario=str(s["id"]), metric=_METRIC_NAMES[metric],
                    a=_recipe(tables, best), b=_recipe(tables, runner), median=Cell(fmt_signed(ci["median"]), ci["median"]),
                    ci=Cell(f"[{fmt_signed(ci['ci_low'])}, {fmt_signed(ci['ci_high'])}]", (ci["ci_low"], ci["ci_high"])),
                    outcome="tie (CI contains 0)" if tie else "separated (CI excludes 0)", rows=ci["rows"],
                    n_resamples=Cell(fmt_int(ci["n_resamples"]), ci["n_resamples"]))
    cite = {k: Cite(row.cells[k].text, row.id, row.cells[k].value) for k in ("median", "ci")}
    frags: list[Fragment] = [f"{_METRIC_NAMES[metric]}, {_recipe(tables, best)} − {_recipe(tables, runner)} "
                             "(best − runner-up): paired-bootstrap Δ ", cite["median"], ", 95% CI ", cite["ci"]]
    if tie:
        frags.append(" contains 0 — a tie; rule: simplest recipe first")
        frags.append(f", so {_recipe(tables, chosen)}." if chosen != best else f"; {_recipe(tables, best)} is already "
                     "the simplest of the tied candidates.")
    else:
        frags.append(f" excludes 0, so {_recipe(tables, best)} is measurably better.")
    return chosen, frags


def _simplest_within_noise(audit, tables, s: dict, ranked: list[str]) -> tuple[str, Cite | None]:
    """For an F1 objective, the simplest candidate the data cannot tell apart from the best one.

    "Cannot tell apart": the objective is within the noise floor (bootstrap CI width) of the best
    and, where a paired CI exists (pairs with the baseline), that CI contains 0. Claiming that the
    top-ranked grid point beats the default recipe on a difference below the noise floor would be
    reading noise.
    """
    metric = s["objective"]["metric"]
    tier = _TIER_OF_METRIC.get(metric)
    width = _noise_width(audit, tables, tier) if tier else None
    best = ranked[0]
    if width is None or _value(tables, best, metric) is None:
        return best, width
    top = _value(tables, best, metric)
    # The best is always among them (a zero-width CI, e.g. from a degenerate student, ties nothing else).
    tied = [best] + [k for k in ranked[1:] if (v := _value(tables, k, metric)) is not None
                     and abs(top - v) < width.value and not _significantly_different(tables, k, best, tier)]
    return min(tied, key=lambda k: (_simplicity(tables, k), ranked.index(k))), width


def _noise_note(tables, s: dict, chosen: str, ranked: list[str], width: Cite | None) -> list[Fragment] | None:
    """The best candidate is kept, but another one is within the noise floor: say so."""
    metric = s["objective"]["metric"]
    tier = _TIER_OF_METRIC.get(metric)
    runner = next((k for k in ranked if _arm(tables, k) != _arm(tables, chosen)), None)
    if tier is None or runner is None or width is None:
        return None
    a, b = _value(tables, chosen, metric), _value(tables, runner, metric)
    if a is None or b is None or abs(a - b) >= width.value:
        return None
    why = ("the paired bootstrap separates them" if _significantly_different(tables, chosen, runner, tier)
           else "it is also the simpler recipe")
    return [f"{_recipe(tables, chosen)} (", _cite(tables, chosen, metric), f") and {_recipe(tables, runner)} (",
            _cite(tables, runner, metric), f") differ by less than the {tier} bootstrap CI width (", width,
            f"), within noise floor; {_recipe(tables, chosen)} is kept because {why}."]


def _infeasible(audit, tables, s: dict, candidates: list[str], failed: list[tuple[int, dict]], base: str) -> Recommendation:
    """Nothing meets a constraint: say so, say what kind of problem it is, cite the ceiling."""
    items: list[tuple[str, list[Fragment]]] = [("Recipe", ["None of the measured recipes meets this scenario."])]
    i, c = failed[0] if failed else (0, {})
    bound = tables["scenarios"].cite(f"{s['id']}-{i}", "bound") if s["constraints"] else None
    boot = tables.get("bootstrap")
    if "significant_lift" in c:
        tier = c["significant_lift"]
        rows = [(k, _bootstrap_key(_arm(tables, k), tier)) for k in candidates]
        rows = [(k, r) for k, r in rows if boot is not None and boot.has(r)]
        why: list[Fragment] = [f"No recipe's {tier} macro-F1 lift over the baseline ({base}) has a confidence "
                               "interval that excludes zero"]
        if rows:
            k, r = max(rows, key=lambda kr: boot.value(kr[1], "ci_low") if boot.value(kr[1], "ci_low") is not None else -math.inf)
            why += ["; the closest is ", f"{_arm(tables, k)} with CI ", boot.cite(r, "ci")]
        why.append(" — it cannot be distinguished from zero at this sample size.")
        items.append(("Why", why))
        flip: list[Fragment] = [f"The decision flips when a recipe's {tier} lift confidence interval excludes zero"]
        if rows:
            flip += [" (the closest lower bound now is ", boot.cite(r, "ci_low"), ")"]
        items.append(("Flip", flip + [f"; the alternative is {s['flip_alternative']}."]))
        items.append(("Ceiling", _ceiling(audit, tables, tier)))
    elif c:
        metric = c["metric"]
        name = _METRIC_NAMES[metric]
        known = [k for k in candidates if _value(tables, k, metric) is not None]
        if metric in MEASURED_METRICS:  # closest by the fastest repeat, not by a noisy median
            best = min(known, key=lambda k: _spread(tables, k, metric).low if "max" in c else -_spread(tables, k, metric).high)
            items.append(("Why", [f"No candidate meets {name} {'≤' if 'max' in c else '≥'} ", bound,
                                  " even in its best timed repeat; the closest is ",
                                  tables["candidates"].cite(best, "recipe"), " (measured)."]))
            items.append(("Flip", ["Loosening the bound past the measured cost of ",
                                   tables["candidates"].cite(best, "recipe"), " would admit it; otherwise the "
                                   f"alternative is {s['flip_alternative']}."]))
        else:
            best = min(known, key=lambda k: _value(tables, k, metric) * (1 if "max" in c else -1))
            items.append(("Why", [f"No candidate meets {name} {'≤' if 'max' in c else '≥'} ", bound,
                                  f"; the closest is {_recipe(tables, best)} at ", _cite(tables, best, metric), "."]))
            items.append(("Flip", ["Loosening the bound to ", _cite(tables, best, metric),
                                   f" would admit {_recipe(tables, best)}; otherwise the alternative is "
                                   f"{s['flip_alternative']}."]))
        tier = _TIER_OF_METRIC.get(metric)
        if tier is not None:
            items.append(("Ceiling", _ceiling(audit, tables, tier)))
        elif metric in MEASURED_METRICS:
            items.append(("Ceiling", ["This is a serving-cost problem, not a data or recipe one: every measured "
                                      "model is slower than the budget."]))
        else:
            items.append(("Ceiling", ["Post-hoc temperature scaling was already among the candidates, so no "
                                      "recipe measured here reaches this calibration target."]))
    if s.get("threshold") is None:
        items.append(("Threshold", [f"Not applicable to scenario {s['id']} (no confidence threshold is used)."]))
    ranked = sorted(candidates, key=lambda k: _sort_key(tables, k, s))
    if ranked:
        k = ranked[0]
        goal = s["objective"]["metric"]
        items.append(("If forced", [f"If a model must ship anyway, the best {_METRIC_NAMES[goal]} is "
                                    f"{_recipe(tables, k)} (", *_show(tables, k, goal), "), knowing it does not "
                                    "meet the constraint."]))
    return Recommendation(s, None, "none", False, items)


def _ceiling(audit: dict, tables, tier: str) -> list[Fragment]:
    """A data problem: cite the teacher's own score on the tier as the ceiling, and the tier's support."""
    frags: list[Fragment] = ["This is a data problem, not a recipe one"]
    metrics = tables.get("tier-metrics")
    students = [r for r in (metrics.rows if metrics is not None else []) if r.cells["tier"].text == tier
                and r.cells["arm"].text != "teacher" and r.cells["macro_f1"].value is not None]
    top = max(students, key=lambda r: r.cells["macro_f1"].value, default=None)
    if metrics is not None and metrics.has(f"teacher-{tier}"):
        teacher = metrics.row(f"teacher-{tier}").cells["macro_f1"]
        cite = metrics.cite(f"teacher-{tier}", "macro_f1")
        if top is None or (teacher.value is not None and teacher.value > top.cells["macro_f1"].value):
            frags += [": the teacher itself reaches only ", cite,
                      f" macro-F1 on the {tier} tier, which bounds what any student distilled from it can learn"]
        else:
            frags += [": the teacher reaches ", cite, f" macro-F1 on the {tier} tier, no better than ",
                      top.cells["arm"].text, "'s ", Cite(top.cells["macro_f1"].text, top.id, top.cells["macro_f1"].value),
                      ", so here it does not bound the students — the tier's data does"]
    else:
        frags.append(": no teacher predictions were given, so the ceiling cannot be cited from a teacher score")
    summary = tables.get("tier-summary")
    if tier in ("head", "mid", "tail") and summary is not None and summary.has(tier):
        frags += [f"; {tier} classes have a median of ", summary.cite(tier, "median_count"), f" {support_noun(audit)}"]
    frags.append(". More labelled examples for these classes, not a different loss, is what would move it.")
    return frags
