"""What the report reads from ``audit.json``, checked before anything is drawn.

A hand-edited, truncated or foreign ``audit.json`` must stop with one line naming the file and the
key (``arms.kd.overall.ece``), not with a traceback from deep inside a table or a plot. The spec
lists only what the report reads; other keys are free (the audit adds keys over time).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from distillab.errors import InputError

# Spec language: a type name (str), a dict {key: spec} (keys ending in "?" are optional, "*" is any
# key), a one-element list [spec] (a list of those), or a tuple of alternatives.
NUM = "number"  # a finite int or float, not bool (the audit writes NaN as null)
INT = "int"
STR = "str"
BOOL = "bool"
NULL = "null"
ANY = "any"
OPT_NUM = (NUM, NULL)

METRICS = {"*": ANY} | {
    f"{k}?": OPT_NUM for k in ("macro_f1", "accuracy", "ece", "nll", "brier", "js_to_teacher", "agreement")
}
RELIABILITY = {"bins?": [{"lower": NUM, "upper": NUM, "count": NUM, "accuracy": OPT_NUM, "confidence": OPT_NUM}]}
COVERAGE = [{"threshold": NUM, "coverage?": OPT_NUM, "accuracy?": OPT_NUM, "n_covered?": OPT_NUM,
             "source?": (STR, NULL)}]
SEARCH = {"*": ANY, "rows": COVERAGE, "threshold?": OPT_NUM, "floor?": OPT_NUM, "floor_hit?": (BOOL, NULL)}
MATRIX = [[OPT_NUM]]
PAIRWISE = {"candidates": [STR], "n_resamples?": (INT, NULL),
            "groups": {"*": {"*": {"median": MATRIX, "ci_low": MATRIX, "ci_high": MATRIX}}}}
SPLIT = {"overall?": METRICS, "tiers?": {"*": METRICS}, "reliability?": (RELIABILITY, NULL),
         "coverage?": (COVERAGE, NULL), "threshold_search?": (SEARCH, NULL)}
SPREAD = {"median": NUM, "min?": NUM, "max?": NUM}

ARM = {
    "overall": METRICS,
    "tiers": {"*": (METRICS, NULL)},
    "per_class_f1": [OPT_NUM],
    "coverage?": (COVERAGE, NULL),
    "threshold_search?": (SEARCH, NULL),
    "sla?": ({"*": ANY, "target?": OPT_NUM, "threshold?": OPT_NUM, "coverage?": OPT_NUM, "accuracy?": OPT_NUM,
              "n_covered?": OPT_NUM, "best_accuracy?": OPT_NUM}, NULL),
    "reliability?": (RELIABILITY, NULL),
}
META = {
    "model?": (STR, NULL),
    "role?": (STR, NULL),
    "params?": (INT, NULL),
    "recipe?": ({"loss?": (STR, NULL), "T?": OPT_NUM, "alpha?": OPT_NUM, "epsilon?": OPT_NUM, "kind?": (STR, NULL)},
                NULL),
    "serving?": ({"ms_per_example?": OPT_NUM}, NULL),
    "measurements?": ({"serving?": ({"ms_per_example?": (SPREAD, NULL), "forward_ms_per_example?": (SPREAD, NULL),
                                     "threads?": (INT, NULL), "batch_size?": (INT, NULL)}, NULL)}, NULL),
    "dataset?": ANY,
}
BOOTSTRAP_ROW = {"arm": STR, "tier": STR, "metric?": STR, "baseline?": STR, "median?": OPT_NUM,
                 "ci_low?": OPT_NUM, "ci_high?": OPT_NUM, "ci_width?": OPT_NUM, "excludes_zero?": (BOOL, NULL),
                 "verdict?": (STR, NULL), "n_resamples?": (INT, NULL), "better?": (STR, NULL)}
GRID_ROW = {"arm": STR, "T": NUM, "alpha": NUM, "macro_f1": NUM, "ece": NUM, "nll": NUM,
            "head_f1?": OPT_NUM, "mid_f1?": OPT_NUM, "tail_f1?": OPT_NUM, "rank_macro_f1?": (INT, NULL),
            "rank_ece?": (INT, NULL), "rank_nll?": (INT, NULL), "rank_head_f1?": (INT, NULL)}
WARNING = (STR, {"message": STR})

AUDIT = {
    "n": INT,
    "num_classes": INT,
    "arms": {"*": ARM},
    "classes?": ([STR], NULL),
    "tier_source?": (STR, NULL),
    "tiers?": ({"*": ({"classes?": [INT], "classes_evaluated?": [INT], "n?": (INT, NULL)}, NULL)}, NULL),
    "tier_support?": ([{"rank": INT, "class": INT, "count": NUM, "tier?": (STR, NULL)}], NULL),
    "settings?": ({"*": ANY, "baseline?": (STR, NULL), "distilled?": (STR, NULL)}, NULL),
    "inputs?": ({"*": ({"path?": (STR, NULL), "sha256?": (STR, NULL), "meta?": (META, NULL)}, NULL)}, NULL),
    "calibration?": ({"*": {"temperature?": OPT_NUM, "n_eval?": (INT, NULL),
                            "eval?": ({"raw?": (SPLIT, NULL), "scaled?": (SPLIT, NULL)}, NULL)}}, NULL),
    "bootstrap?": ([BOOTSTRAP_ROW], NULL),
    "candidate_bootstrap?": ({"f1?": (PAIRWISE, NULL), "calibration?": (PAIRWISE, NULL)}, NULL),
    "transfer_tests?": ({"test_a?": ({"*": ({"*": (METRICS, NULL)}, NULL)}, NULL),
                         "test_b?": ({"baseline?": (STR, NULL), "distilled?": (STR, NULL),
                                      "ece_fraction?": OPT_NUM, "nll_fraction?": OPT_NUM,
                                      "ece?": ({"*": ANY, "baseline_raw?": OPT_NUM, "baseline_scaled?": OPT_NUM,
                                                "distilled?": OPT_NUM, "note?": (STR, NULL)}, NULL),
                                      "nll?": ({"*": ANY, "baseline_raw?": OPT_NUM, "baseline_scaled?": OPT_NUM,
                                                "distilled?": OPT_NUM, "note?": (STR, NULL)}, NULL)}, NULL)}, NULL),
    "per_class_delta_f1?": ({"*": [OPT_NUM]}, NULL),
    "grid?": ([GRID_ROW], NULL),
    "noise_floor?": ({"*": OPT_NUM}, NULL),
    "lift_table?": ({"*": ANY, "note?": (STR, NULL), **{f"{k}?": OPT_NUM for k in (
        "reference_score", "baseline_score", "distilled_score", "data_lift", "kd_lift", "ratio")}}, NULL),
    "warnings?": ([WARNING], NULL),
}

_TYPE_NAMES = {NUM: "a finite number", INT: "an integer", STR: "a string", BOOL: "true or false", NULL: "null",
               ANY: "anything"}


def _describe(spec: Any) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_describe(s) for s in spec)
    if isinstance(spec, dict):
        return "an object"
    if isinstance(spec, list):
        return "a list"
    return _TYPE_NAMES[spec]


def _matches_shape(value: Any, spec: Any) -> bool:
    """Whether ``value`` has the outer shape of ``spec`` (inner keys are checked by _check)."""
    if isinstance(spec, dict):
        return isinstance(value, dict)
    if isinstance(spec, list):
        return isinstance(value, list)
    if spec == ANY:
        return True
    if spec == NULL:
        return value is None
    if spec == BOOL:
        return isinstance(value, bool)
    if spec == STR:
        return isinstance(value, str)
    if spec == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if spec == NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    raise AssertionError(f"unknown spec {spec!r}")


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check(value: Any, spec: Any, where: str) -> None:
    options = spec if isinstance(spec, tuple) else (spec,)
    for option in options:
        if _matches_shape(value, option):
            break
    else:
        shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
        raise _Bad(where, f"must be {_describe(spec)}, got {shown[:60]}")
    if isinstance(option, dict):
        for key, sub in option.items():
            if key == "*":
                continue
            name = key.rstrip("?")
            if name in value:
                _check(value[name], sub, f"{where}.{name}" if where else name)
            elif not key.endswith("?"):
                raise _Bad(where or "the top level", f"has no '{name}'")
        if "*" in option:
            named = {k.rstrip("?") for k in option if k != "*"}
            for key, item in value.items():
                if key not in named:
                    _check(item, option["*"], f"{where}.{key}" if where else str(key))
    elif isinstance(option, list):
        for i, item in enumerate(value):
            _check(item, option[0], f"{where}[{i}]")


class _Bad(Exception):
    def __init__(self, where: str, what: str):
        super().__init__(f"{where} {what}")


def check_audit(audit: Any, path: Path) -> None:
    """Raise one InputError naming ``path`` and the first key that does not have the shape the report reads."""
    hint = "; re-run `distillab audit` to regenerate it"
    if not isinstance(audit, dict):
        raise InputError(f"{path}: expected a JSON object (an audit.json written by `distillab audit`), "
                         f"got {type(audit).__name__}")
    missing = [k for k in ("n", "num_classes", "arms") if k not in audit]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)}{hint}")
    try:
        _check(audit, AUDIT, "")
    except _Bad as exc:
        raise InputError(f"{path}: {exc}{hint}") from None
    problem = _consistency(audit)
    if problem:
        raise InputError(f"{path}: {problem}{hint}")


def _consistency(audit: dict) -> str | None:
    """Cross-key facts the report relies on (lengths, class ids, arm names)."""
    k, arms = audit["num_classes"], audit["arms"]
    if k < 1 or audit["n"] < 0:
        return f"num_classes must be >= 1 and n >= 0, got {k} and {audit['n']}"
    if not arms:
        return "'arms' is empty; the audit needs at least one arm"
    if all(a == "teacher" for a in arms):
        return "arms has only the teacher; the report needs at least one student arm"
    for arm, block in arms.items():
        if len(block["per_class_f1"]) != k:
            return f"arms.{arm}.per_class_f1 has {len(block['per_class_f1'])} values, expected num_classes = {k}"
    classes = audit.get("classes")
    if classes is not None and len(classes) != k:
        return f"classes has {len(classes)} names, expected num_classes = {k}"
    for arm, values in (audit.get("per_class_delta_f1") or {}).items():
        if arm not in arms:
            return f"per_class_delta_f1.{arm} is not an arm"
        if len(values) != k:
            return f"per_class_delta_f1.{arm} has {len(values)} values, expected num_classes = {k}"
    for i, row in enumerate(audit.get("tier_support") or []):
        if not 0 <= row["class"] < k:
            return f"tier_support[{i}].class is {row['class']}, outside 0..{k - 1}"
    for tier, info in (audit.get("tiers") or {}).items():
        for key in ("classes", "classes_evaluated"):
            bad = [c for c in (info or {}).get(key) or [] if not 0 <= c < k]
            if bad:
                return f"tiers.{tier}.{key} holds {bad[0]}, outside 0..{k - 1}"
    for part, block in (audit.get("candidate_bootstrap") or {}).items():
        c = len((block or {}).get("candidates") or [])
        for group, metrics in ((block or {}).get("groups") or {}).items():
            for metric, stats in metrics.items():
                for stat, matrix in stats.items():
                    if len(matrix) != c or any(len(row) != c for row in matrix):
                        return (f"candidate_bootstrap.{part}.groups.{group}.{metric}.{stat} is not {c} × {c} "
                                "(one row and column per candidate)")
    return None
