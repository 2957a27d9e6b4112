"""``distillab calibrate``: fit a post-hoc temperature on a predictions file's cal split."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="fit a post-hoc temperature on a predictions file's cal split",
        description="Fit T (softmax(logits / T)) on the cal half of a predictions file, report raw vs scaled "
        "ECE/NLL on the eval half, and record T in the file's JSON sidecar (and --out, if given).",
    )
    p.add_argument("predictions", metavar="PRED.npz", help="predictions file (logits, labels[, ids])")
    p.add_argument("--cal-split", metavar="FILE",
                   help='JSON {"cal": [...], "eval": [...]} of row positions or ids (default: seeded halves)')
    p.add_argument("--split-seed", type=int, default=1041, help="RandomState seed of the halves (default: 1041, the course's)")
    p.add_argument("--out", metavar="FILE.json", help="also write the calibration record here")
    p.add_argument("--no-sidecar", action="store_true", help="do not write the temperature into PRED.json")
    p.add_argument("--optimizer", choices=("exact", "reference"), default="exact",
                   help="exact: float64 L-BFGS-B to the optimum (default); reference: the course's torch LBFGS "
                   "(lr 0.1, max_iter 200, float32), which stops slightly short and reproduces its printed numbers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distillab.calibrate.run import calibrate_predictions

    record = calibrate_predictions(
        args.predictions, cal_split=args.cal_split, split_seed=args.split_seed, out=args.out,
        update_sidecar=not args.no_sidecar, optimizer=args.optimizer,
    )
    if record["warning"]:
        print(f"distillab calibrate: warning: {args.predictions}: {record['warning']}", file=sys.stderr)
    raw, scaled = record["eval"]["raw"], record["eval"]["scaled"]
    print(
        f"T = {record['temperature']:.4f} (fitted on {record['n_cal']} rows); eval ECE {raw['ece']:.4f} -> {scaled['ece']:.4f}, "
        f"NLL {raw['nll']:.4f} -> {scaled['nll']:.4f}"
    )
    return 0
