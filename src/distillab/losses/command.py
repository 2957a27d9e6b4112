"""``distillab check-loss MODULE:FUNCTION``: a thin wrapper over :func:`distillab.losses.check.check_loss_isolated`.

Imports torch only inside the handler so the CLI starts fast.
"""

from __future__ import annotations

import argparse

HELP = """Check your KD loss against distillab's float64 reference on seeded random batches (values and
gradients). Prints "matches the reference" or the known silent bug(s) its numbers fit. Exit code 0 only
on a match, 1 on a mismatch, 2 when the function cannot be imported or called."""


def register(subparsers) -> None:
    """Add ``check-loss`` to the ``distillab`` parser."""
    parser = subparsers.add_parser(
        "check-loss",
        help="check your KD loss against the reference and name its bug",
        description=HELP,
        epilog="Accepted forms: fn(student_logits, teacher_logits, labels, T, alpha); keyword names "
        "temperature/temp/tau/T_d for T and kd_alpha/lam for alpha; fn(s, t, y) with --T/--alpha; the "
        "function may return a scalar tensor, (loss, parts) or {'loss': ...}. See docs/check-loss.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="MODULE:FUNCTION",
        help="e.g. my_losses:kd_loss (importable from the current directory) or path/to/losses.py:kd_loss",
    )
    parser.add_argument("--T", type=float, default=None, help="T fixed inside a function called as fn(s, t, y)")
    parser.add_argument("--alpha", type=float, default=None, help="alpha fixed inside a function called as fn(s, t, y)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from distillab.errors import InputError
    from distillab.losses.check import check_loss_isolated, format_report

    if (args.T is None) != (args.alpha is None):
        raise InputError("give both --T and --alpha (the values fixed inside your function), or neither")
    fixed = None if args.T is None else (args.T, args.alpha)
    if fixed is not None:
        from distillab.losses.kd import _temperature, _unit_interval

        fixed = (_temperature(args.T), _unit_interval("alpha", args.alpha))
    result = check_loss_isolated(args.target, fixed)
    print(format_report(result, args.target))
    return 0 if result.matches else 1
