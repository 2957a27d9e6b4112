"""``distillab quantize ARM_DIR``: an int8 copy of a trained student and what it costs and changes.

Examples::

    distillab quantize runs/r52-bow/arms/vanilla --data r52 --split test
    distillab quantize runs/r52-bow/arms/kd --data r52 --backend torch.ao --out /tmp/kd-int8

Writes ARM_DIR/quantized/ (or --out): model/ (the int8 student), predictions/SPLIT.npz (+ .json) and
quantization.json. Nothing is written unless every step succeeds.
"""

from __future__ import annotations

import argparse
import sys

BACKEND_CHOICES = ("auto", "torchao", "torch.ao")  # distillab.quantize.backends.BACKENDS, without importing torch


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize",
        help="int8-quantize a trained student; size, speed, agreement and calibration against the float one",
        description="Make an int8 dynamic-quantized copy of ARM_DIR/model (Linear layers; the bag-of-n-grams "
        "student's embedding table too with torch.ao), predict SPLIT with both, and write ARM_DIR/quantized/: "
        "model/, predictions/SPLIT.npz (+ .json) and quantization.json (size on disk, serving cost, top-1 "
        "agreement, flip rate by confidence, paired-bootstrap dECE/dNLL, temperature refitted on the int8 logits).",
    )
    p.add_argument("arm_dir", metavar="ARM_DIR", help="an arm folder (holds model/), e.g. runs/NAME/arms/ARM")
    p.add_argument("--data", required=True, metavar="NAME_OR_SPEC",
                   help="the dataset the arm was trained on (lab name, spec file, inline JSON, path or Hub id)")
    p.add_argument("--data-dir", default=None, help="where lab dataset files are looked up first")
    p.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    p.add_argument("--out", metavar="DIR", help="output folder, replaced as a whole (default: ARM_DIR/quantized)")
    p.add_argument("--n-resamples", type=int, default=1000, help="paired-bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=42, help="bootstrap RandomState seed (default: 42, the audit's)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="auto: torchao when installed, else torch.ao (deprecated in torch; recorded as a warning)")
    p.add_argument("--batch-size", type=int, default=64, help="rows per forward pass when predicting (default 64)")
    p.add_argument("--cal-split", metavar="FILE",
                   help='JSON {"cal": [...], "eval": [...]} for the temperature fits (default: the audit\'s halves '
                   "when the arm has model/temperature.json, else all rows)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from distillab.quantize.run import quantize_arm, summary_line

    record = quantize_arm(args.arm_dir, args.data, split=args.split, out=args.out, n_resamples=args.n_resamples,
                          seed=args.seed, backend=args.backend, batch_size=args.batch_size, cal_split=args.cal_split,
                          data_dir=args.data_dir)
    for warning in record["backend"]["warnings"] + record["calibration"]["warnings"]:
        print(f"distillab quantize: warning: {warning}", file=sys.stderr)
    out = args.out or os.path.join(args.arm_dir, "quantized")
    print(f"{summary_line(record)}; wrote {out}")
    return 0
