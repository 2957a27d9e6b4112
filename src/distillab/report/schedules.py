"""The schedules table: each born-again generation against the one before, a chain's student against direct KD.

Built from ``audit/schedules.json`` (:mod:`distillab.schedules`), which ``distillab run`` writes when
the config has ``born_again`` or ``chains``: every number here is copied from it, nothing recomputed.
"""

from __future__ import annotations

from pathlib import Path

from distillab.errors import InputError
from distillab.io import read_json
from distillab.report.tables import SCOPES, Cell, Table, _ci_text, _num, fmt_float, fmt_signed

SCHEDULES_FILE = "schedules.json"


def load_schedules(path: Path) -> dict | None:
    """``schedules.json`` when present, its shape checked; None when absent."""
    if not path.exists():
        return None
    data = read_json(path)
    if not (isinstance(data, dict) and isinstance(data.get("comparisons"), list)
            and all(isinstance(r, dict) and isinstance(r.get("bootstrap"), dict) for r in data["comparisons"])):
        raise InputError(f"{path}: not a schedules file (needs comparisons as distillab run writes them); "
                         "re-run the audit stage or remove it")
    return data


def schedules_table(data: dict) -> Table:
    """One row per comparison and tier; the seed columns only when the run trained several seeds."""
    seeded = bool(data.get("seeds"))
    t = Table(
        "schedules",
        "Schedules: generation against generation, chain against direct distillation",
        [("comparison", "Comparison"), ("tier", "Tier"), ("f1", "Macro-F1 (arm / against)"), ("median", "Median Δ"),
         ("ci", "95% CI (test rows)"), ("verdict", "Verdict")]
        + ([("seed_mean", "Mean Δ over seeds"), ("seed_ci", "95% CI over seeds"), ("seed_verdict", "Verdict (seed noise)")]
           if seeded else []),
        note="Δ = macro-F1(arm) − macro-F1(against). A born-again generation is compared with the one before it "
        "(does the gain compound or fade?) and the last with the first; a chain's student with the arm trained "
        "as it was but taught by the teacher directly. The CI over test rows is the audit's paired bootstrap "
        "between the two (same resamples as every other CI)"
        + ("; the CI over seeds is mean Δ ± t · sd / √n of the seed-paired Δ." if seeded else "."),
    )
    for r in data["comparisons"]:
        for scope in SCOPES:
            boot = r["bootstrap"].get(scope) or {}
            arm_f1, against_f1 = (r.get("macro_f1") or {}).get(scope) or (None, None)
            cells = dict(
                comparison=f"{r['arm']} − {r['against']}", tier=scope,
                f1=Cell(f"{fmt_float(arm_f1)} / {fmt_float(against_f1)}", (arm_f1, against_f1)),
                median=_num(boot.get("median"), fmt_signed),
                ci=Cell(_ci_text(boot), (boot.get("ci_low"), boot.get("ci_high"))),
                verdict=str(boot.get("verdict") or "—"),
            )
            if seeded:
                seed = (r.get("seeds") or {}).get(scope) or {}
                cells.update(seed_mean=_num(seed.get("mean"), fmt_signed), seed_ci=Cell(_ci_text(seed)),
                             seed_verdict=str(seed.get("verdict") or "not trained with every seed"))
            t.add(f"{r['arm']} vs {r['against']} {scope}", **cells)
    return t
