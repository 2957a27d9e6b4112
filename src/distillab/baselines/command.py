"""``distillab baseline``: fit a reference baseline and write its predictions file for ``distillab audit --arm``.

Nothing heavy at module level (``distillab --help`` must stay instant); scikit-learn loads in the handler.
"""

from __future__ import annotations

import argparse

KINDS = ("tfidf_linear",)  # kept equal to stage.BASELINE_KINDS by a test; listed here so --help imports nothing


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "baseline",
        help="fit a reference baseline (what you would use instead) and write its predictions file",
        description="Fit a reference baseline on the train split and write its eval-split predictions "
        "(logits = log-probabilities, labels, ids, and a sidecar with role 'reference', fit time and serving "
        "cost), ready for `distillab audit --arm NAME=FILE.npz`.",
    )
    p.add_argument("--data", required=True, metavar="SPEC",
                   help="a lab name, a YAML/JSON spec file, inline JSON, a local file/folder, or a Hub id")
    p.add_argument("--data-dir", help="extra folder(s) to search first for lab datasets")
    p.add_argument("--kind", required=True, choices=KINDS, help="which baseline")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="predictions file to write (sidecar beside it)")
    p.add_argument("--name", help="arm name recorded in the sidecar (default: the kind)")
    p.add_argument("--train-split", default="train", help="split to fit on (default: train)")
    p.add_argument("--eval-split", default="test", help="split to predict (default: test)")
    p.add_argument("--seed", type=int, default=0, help="seed of the validation slice that chooses C (default: 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distillab.baselines.stage import write_baseline_predictions
    from distillab.data.load import load_dataset, spec_from_argument
    from distillab.errors import InputError

    if not args.out.endswith(".npz"):
        raise InputError(f"--out {args.out}: a predictions file must end in .npz")
    dataset = load_dataset(spec_from_argument(args.data, data_dir=args.data_dir))
    path = write_baseline_predictions(args.kind, dataset, args.train_split, args.eval_split, args.out,
                                      seed=args.seed, name=args.name)
    print(f"{args.kind} on {dataset.name} {args.eval_split}: wrote {path}")
    return 0
