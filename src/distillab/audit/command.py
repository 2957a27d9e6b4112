"""``distillab audit``: a thin wrapper over :func:`distillab.audit.core.audit`.

Nothing heavier than argparse is imported at module level; numpy/scipy load inside the handler.
"""

from __future__ import annotations

import argparse
import math


def _pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.npz, got {text!r}")
    return name, path


def _floats(count: int | None):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
        if not all(math.isfinite(v) for v in values):  # inf would overflow int(), NaN fails every comparison
            raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
        if count is not None and len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated numbers, got {text!r}")
        return values

    return parse


def _cutoffs(text: str) -> tuple[int, int]:
    values = _floats(2)(text)
    if any(v != int(v) for v in values):
        raise argparse.ArgumentTypeError(f"cut-offs are ranks (integers), got {text!r}")
    return int(values[0]), int(values[1])


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "audit",
        help="metrics per tier, paired bootstrap, temperature scaling, coverage and transfer tests",
        description="Audit what distillation transferred: per-tier metrics, a paired bootstrap against the "
        "baseline, post-hoc temperature scaling, coverage/SLA and Tests A/B. Writes OUT/audit.json and OUT/audit.md.",
    )
    p.add_argument("--teacher", metavar="T.npz", help="teacher predictions (becomes the arm 'teacher')")
    p.add_argument("--arm", metavar="NAME=FILE.npz", action="append", type=_pair, required=True,
                   help="a student's predictions; repeat for every arm")
    p.add_argument("--baseline", metavar="NAME", required=True, help="the arm every other arm is compared with")
    p.add_argument("--distilled", metavar="NAME",
                   help="the arm Test B, the lift table and the noise floor are about (default: first non-baseline arm)")
    p.add_argument("--calibrate", metavar="NAME", action="append",
                   help="fit a temperature only for these arms (repeatable; default: every arm; the baseline always)")
    tiers = p.add_mutually_exclusive_group()
    tiers.add_argument("--tier-cutoffs", metavar="A,B", type=_cutoffs, default=None,
                       help="head = ranks 1..A, mid = A+1..B, tail = the rest (default: 20,60 with more than 60 "
                       "classes, else thirds by rank)")
    tiers.add_argument("--tier-thresholds", metavar="H,M", type=_floats(2),
                       help="head = count >= H, mid = count >= M, tail = the rest (instead of rank cut-offs)")
    p.add_argument("--train-counts", metavar="FILE", help="training label counts (JSON list/dict or CSV) to rank classes by")
    p.add_argument("--bins", type=int, default=15, help="equal-width ECE bins (default: 15)")
    p.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=42, help="bootstrap RandomState seed (default: 42)")
    p.add_argument("--thresholds", type=_floats(None), default=(0.5, 0.6, 0.7, 0.8, 0.9),
                   help="coverage thresholds on max probability (default: 0.5,0.6,0.7,0.8,0.9)")
    p.add_argument("--sla", type=float, default=0.95, help="accuracy target for the SLA threshold (default: 0.95)")
    p.add_argument("--cal-split", metavar="FILE",
                   help='JSON {"cal": [...], "eval": [...]} of row positions or ids (default: seeded halves, seed 1041)')
    p.add_argument("--classes", metavar="classes.json", help="class names (JSON list); default: sidecar 'classes' or ids")
    p.add_argument("--reference-score", type=float, metavar="F1",
                   help="a reference macro-F1 (e.g. a smaller-data baseline) for the lift table")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory for audit.json and audit.md")
    p.add_argument("--optimizer", choices=("exact", "reference"), default="exact",
                   help="temperature fit: exact (float64 L-BFGS-B to the optimum, default) or reference (the course's "
                   "torch LBFGS, lr 0.1, max_iter 200, float32: reproduces its printed ECE and Test B)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary (warnings still print)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from distillab.audit.core import audit
    from distillab.errors import InputError

    names = [name for name, _ in args.arm]
    if len(set(names)) != len(names):
        raise InputError(f"arm names must be unique, got {', '.join(names)}")
    result = audit(
        arms=dict(args.arm),
        baseline=args.baseline,
        teacher=args.teacher,
        distilled=args.distilled,
        calibrate=args.calibrate,
        train_counts=args.train_counts,
        tier_cutoffs=args.tier_cutoffs,
        tier_thresholds=args.tier_thresholds,
        bins=args.bins,
        n_resamples=args.n_resamples,
        seed=args.seed,
        thresholds=args.thresholds,
        sla_target=args.sla,
        cal_split=args.cal_split,
        classes=args.classes,
        reference_score=args.reference_score,
        out=args.out,
        progress=not args.quiet,
        optimizer=args.optimizer,
    )
    if not args.quiet:
        print(summary(result, Path(args.out) / "audit.json"))
    return 0


def summary(result: dict, path) -> str:
    """A few lines for the terminal: headline metrics per arm, the bootstrap verdicts, Test B."""
    lines = [f"{'arm':<14}{'macro-F1':>10}{'ECE':>8}{'NLL':>8}   tiers from {result['tier_source']}"]
    for name, arm in result["arms"].items():
        o = arm["overall"]
        lines.append(f"{name:<14}{o['macro_f1']:>10.4f}{o['ece']:>8.4f}{o['nll']:>8.4f}")
    distilled, baseline = result["settings"]["distilled"], result["settings"]["baseline"]
    for r in result["bootstrap"]:
        if r["arm"] == distilled and r["metric"] == "macro_f1":
            lines.append(
                f"{distilled} − {baseline} macro-F1 [{r['tier']}]: {r['median']:+.4f} "
                f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] {r['verdict']}"
            )
    test_b = result["transfer_tests"]["test_b"]
    if test_b:
        fractions = [test_b[f"{m}_fraction"] for m in ("ece", "nll")]
        parts = [f"{_percent(f)} of {distilled}'s {m.upper()} gain" for f, m in zip(fractions, ("ece", "nll"))]
        why = " (n/a: the distilled arm gained nothing there)" if None in fractions else ""
        lines.append(f"Test B: temperature scaling {baseline} reaches {' and '.join(parts)}{why}")
    lines.append(f"wrote {path}")
    return "\n".join(lines)


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.0f}%"
