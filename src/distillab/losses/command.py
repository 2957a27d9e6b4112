"""``distillab check-loss MODULE:FUNCTION``: a thin wrapper over :func:`distillab.losses.check.check_loss_isolated`
(and, with ``--objective``, :func:`distillab.losses.check.check_objective_isolated`).

Imports torch only inside the handler so the CLI starts fast.
"""

from __future__ import annotations

import argparse

HELP = """Check your KD loss against distillab's float64 reference on seeded random batches (values and
gradients). Prints "matches the reference" or the known silent bug(s) its numbers fit. Exit code 0 only
on a match, 1 on a mismatch, 2 when the function cannot be imported or called.

With --objective NAME, check an implementation of one of the feature / attention / relation objectives
instead: it is called exactly as distillab's own (distillab.losses.features) on several seeded float64
cases, and its value and gradient w.r.t. the student input(s) are compared with the float64 reference
(same exit codes; the report shows the largest differences)."""

# Kept in step with distillab.losses.check.OBJECTIVES (a test checks it); written out here so that
# `--help` does not import torch.
OBJECTIVE_CALLS = {
    "hidden_mse": "fn(student, teacher, mask, normalize=bool)  student/teacher [B, T, D] or pooled [B, D] (mask None)",
    "attention_kl": "fn(student_attn, teacher_attn, mask)  [B, H, T, T] probabilities; head counts may differ",
    "attention_mse": "fn(student_attn, teacher_attn, mask)  as attention_kl",
    "attention_transfer": "fn(student_states, teacher_states, mask, p=float)  [B, T, Ds]/[B, T, Dt], or [B, C, H, W] "
                          "with mask None",
    "minilm_relations": "fn(student_qkv, teacher_qkv, relation_heads, mask)  dicts {'q','k','v'} -> [B, T, D]; "
                        "relations qq, kk, vv",
    "rkd": "fn(student, teacher, distance_weight=float, angle_weight=float)  [B, Ds], [B, Dt]",
    "crd_lite": "fn(student, teacher, temperature=float)  [B, D] both",
}

EPILOG = (
    "Accepted forms: fn(student_logits, teacher_logits, labels, T, alpha); keyword names "
    "temperature/temp/tau/T_d for T and kd_alpha/lam for alpha; fn(s, t, y) with --T/--alpha; the "
    "function may return a scalar tensor, (loss, parts) or {'loss': ...}. See docs/check-loss.md.\n\n"
    "--objective NAME: the function is called as below with float64 tensors (float32 if float64 fails);\n"
    "mask is an int64 [B, T] Hugging Face attention_mask (1 = real token) or None; the gradient is taken\n"
    "w.r.t. the student tensors. The formulas: distillab.losses.features.\n"
    + "\n".join(f"  {name:<18} {call}" for name, call in OBJECTIVE_CALLS.items())
)


def register(subparsers) -> None:
    """Add ``check-loss`` to the ``distillab`` parser."""
    parser = subparsers.add_parser(
        "check-loss",
        help="check your KD (or feature/attention/relation) loss against the reference",
        description=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="MODULE:FUNCTION",
        help="e.g. my_losses:kd_loss (importable from the current directory) or path/to/losses.py:kd_loss",
    )
    parser.add_argument("--objective", default="kd", choices=("kd",) + tuple(OBJECTIVE_CALLS),
                        help="which loss the function implements (default: kd); see the calls below")
    parser.add_argument("--T", type=float, default=None, help="T fixed inside a function called as fn(s, t, y)")
    parser.add_argument("--alpha", type=float, default=None, help="alpha fixed inside a function called as fn(s, t, y)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from distillab.errors import InputError

    objective = getattr(args, "objective", "kd")
    if objective != "kd":
        if args.T is not None or args.alpha is not None:
            raise InputError("--T and --alpha apply to --objective kd only; the other objectives are called with their settings")
        from distillab.losses.check import check_objective_isolated, format_objective_report

        result = check_objective_isolated(args.target, objective)
        print(format_objective_report(result, args.target))
        return 0 if result.matches else 1

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
