"""The verdict that opens the report: what transferred, with CIs, and one line per scenario.

A reader should not have to dig: the first screen says whether distillation moved capacity (per
tier), calibration and fidelity, whether temperature scaling alone gets the same, how the students
compare with the teacher and any reference baseline, and which recipe each scenario gets. Every
number is a :class:`~distillab.report.tables.Cite` of a table cell, as in the recommendations.
"""

from __future__ import annotations

from distillab.report.decision import Fragment, Recommendation
from distillab.report.tables import (
    SCOPES,
    Cite,
    Table,
    baseline_arm,
    distilled_arm,
    has_teacher,
    reference_arms,
    recipe_label,
    seed_row_key,
)

_SHORT_VERDICTS = {"cannot be distinguished from zero at this sample size": "not distinguishable from zero"}


def _cell(table: Table, key: str, column: str) -> Cite:
    return table.cite(key, column)


def _delta_with_ci(t: Table, key: str) -> list[Fragment]:
    """"Δ +0.015 [−0.002, +0.031], verdict" — the bootstrap median and its CI, or the columns' difference."""
    row = t.row(key)
    if row.cells["ci"].text == "—":
        return [_cell(t, key, "diff"), " (no CI: descriptive)"]
    verdict = row.cells["verdict"].text
    return [_cell(t, key, "delta"), " ", _cell(t, key, "ci"), f", {_SHORT_VERDICTS.get(verdict, verdict)}"]


# Headline metrics of the distilled-vs-baseline comparison: (transfer-table row, seed-table scope and metric, label).
HEADLINE = (("capacity-overall", "overall", "macro_f1", "macro-F1"), ("calibration-ece", "overall", "ece", "ECE"),
            ("calibration-nll", "overall", "nll", "NLL"))


def _excludes_zero(ci) -> bool | None:
    """Whether a CI cell's (low, high) excludes 0; None when the cell has no CI."""
    if not isinstance(ci, tuple) or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return None
    return ci[0] > 0 or ci[1] < 0


def _noise_sentences(t: Table, seeds: Table | None, dist: str) -> list[Fragment]:
    """Per headline metric, one sentence: does the effect clear test-sample noise, seed noise, both or neither?

    Test-sample noise: the paired-bootstrap CI of the transfer table (primary seed) excludes 0. Seed
    noise: the seed-paired CI of the seed table excludes 0. Only with a seed table (``seeds.json``).
    """
    if seeds is None:
        return []
    out: list[Fragment] = []
    for key, scope, metric, label in HEADLINE:
        if not t.has(key):
            continue
        seed_key = seed_row_key(dist, scope, metric)
        sample = _excludes_zero(t.row(key).cells["ci"].value)
        seed = _excludes_zero(seeds.row(seed_key).cells["ci"].value) if seeds.has(seed_key) else None
        if sample is None and seed is None:
            continue
        sample_frags: list[Fragment] = (
            ["test-sample noise not measured (no paired-bootstrap CI)"] if sample is None else
            ["paired-bootstrap Δ ", _cell(t, key, "delta"), " ", _cell(t, key, "ci"), " (primary seed, test rows "
             "resampled) ", "excludes zero" if sample else "contains zero"])
        if seed is None:
            seed_frags: list[Fragment] = [f"seed noise not measured ({dist} was not trained with several seeds: "
                                          "training.seed_arms)" if not seeds.has(seed_key) else
                                          "seed noise not measured (no CI over seeds)"]
        else:
            seed_frags = ["seed-paired mean Δ ", seeds.cite(seed_key, "mean_delta"), " ", seeds.cite(seed_key, "ci"),
                          " over ", seeds.cite(seed_key, "n_seeds"), " seeds ", "excludes zero" if seed else "contains zero"]
        up_sample = sample and t.row(key).cells["ci"].value[0] > 0
        up_seed = seed and seeds.row(seed_key).cells["ci"].value[0] > 0
        lower_better = metric in ("ece", "nll")

        def direction(up: bool) -> str:
            return f" ({dist} {'better' if up != lower_better else 'worse'})"

        if sample and seed:
            which = ("clears both test-sample and seed noise" + direction(up_sample) if up_sample == up_seed else
                     "clears both noises but in opposite directions: treat it as unresolved")
        elif sample:
            which = ("clears test-sample noise only, not seed noise" if seed is not None else
                     "clears test-sample noise") + direction(up_sample)
        elif seed:
            which = ("clears seed noise only, not test-sample noise" if sample is not None else
                     "clears seed noise") + direction(up_seed)
        elif sample is None or seed is None:
            which = "clears no noise that was measured"
        else:
            which = ("clears neither test-sample nor seed noise: it cannot be distinguished from zero at this "
                     "sample size or across these seeds")
        out += [(" " if out else "") + f"{label}: the Δ {which} — ", *sample_frags, "; ", *seed_frags, "."]
    return out


def verdict_items(audit: dict, tables: dict[str, Table], recs: list[Recommendation]) -> list[tuple[str, list[Fragment]]]:
    """(label, fragments) lines of the verdict, in reading order."""
    base, dist = baseline_arm(audit), distilled_arm(audit)
    items: list[tuple[str, list[Fragment]]] = []
    t = tables.get("transfer")
    if t is not None and dist is not None:
        head = f"{recipe_label(audit, dist)} ({dist}) vs {recipe_label(audit, base)} ({base}), Δ = paired-bootstrap median [95% CI]"
        items.append(("Compared", [head + "."]))
        capacity: list[Fragment] = ["macro-F1 Δ "]
        scopes = [s for s in SCOPES if t.has(f"capacity-{s}")]
        for i, scope in enumerate(scopes):
            capacity += [("; " if i else "") + f"{scope} ", *_delta_with_ci(t, f"capacity-{scope}")]
        if scopes:
            items.append(("Capacity", capacity + [". Temperature scaling cannot reproduce a capacity change (it "
                                                  "never changes the argmax)."]))
        calibration: list[Fragment] = []
        for metric in ("ece", "nll"):
            key = f"calibration-{metric}"
            if t.has(key):
                calibration += [("; " if calibration else "") + f"{metric.upper()} Δ ", *_delta_with_ci(t, key),
                                f" — does {base} + T reproduce it? ", _cell(t, key, "tscaling")]
        if calibration:
            items.append(("Calibration", calibration + ["."]))
        if t.has("fidelity-js_to_teacher-overall"):
            key = "fidelity-js_to_teacher-overall"
            items.append(("Fidelity", ["JS to teacher ", _cell(t, key, "baseline"), f" ({base}) → ",
                                       _cell(t, key, "distilled"), f" ({dist}); top-1 agreement ",
                                       _cell(t, "fidelity-agreement-overall", "baseline"), " → ",
                                       _cell(t, "fidelity-agreement-overall", "distilled"),
                                       " (no CI: descriptive). After temperature scaling: ", _cell(t, key, "tscaling"),
                                       "."]))
        noise = _noise_sentences(t, tables.get("seeds"), dist)
        if noise:
            items.append(("Noise cleared", noise))
    metrics = tables.get("tier-metrics")
    if metrics is not None:
        scale: list[Fragment] = ["overall macro-F1 "]
        arms = ([("teacher", "teacher")] if has_teacher(audit) else []) + [(a, f"{a} (reference)") for a in reference_arms(audit)]
        arms += [(base, base)] + ([(dist, dist)] if dist else [])
        for i, (arm, label) in enumerate(arms):
            if metrics.has(f"{arm}-overall"):
                scale += [("; " if i else "") + f"{label} ", metrics.cite(f"{arm}-overall", "macro_f1")]
        items.append(("For scale", scale + ["."]))
    for r in recs:
        line: list[Fragment] = [Cite(r.recipe, f"scenario-{r.scenario['id']}")]
        decided = next((frags for label, frags in r.items if label == "Decided by"), None)
        if not r.feasible:
            line += [" — ", *next((frags for label, frags in r.items if label == "Why"), [])]
        elif decided is not None:
            ci = next(f for f in decided if isinstance(f, Cite) and f.text.startswith("["))
            tie = any(isinstance(f, str) and "a tie" in f for f in decided)
            line += [" — decided on the paired CI ", ci, " (a tie: simplest recipe)" if tie else ""]
        items.append((f"Scenario {r.scenario['id']} — {r.scenario['name']}", line))
    return items
