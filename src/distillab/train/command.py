"""``distillab train`` and ``distillab grid``: thin wrappers over :mod:`distillab.train`.

Training flags are generated from :class:`~distillab.train.config.TrainConfig` (name, help text),
so the CLI and the Python API cannot drift; a flag left out keeps the dataclass default. Torch is
imported only inside the handlers.

Examples::

    distillab train --data r52 --student bow --cache CACHE --arm vanilla --arm kd:T=4,alpha=0.7 \\
        --arm hard_kd --arm label_smoothing:epsilon=0.1 --epochs 3 --out runs/r52
    distillab grid --data r52 --student bow --cache CACHE --T 1,4,8 --alpha 0.7,0.9 --out runs/grid
    accelerate launch --num_processes 2 -m distillab train ...      # several GPUs (DDP)
    torchrun --nproc_per_node 2 -m distillab train ...               # several CPU processes (gloo)

``--batch-size`` is rows per optimizer step over all processes, so a run on 1 or 8 processes
follows the same data order and gives the same model up to float rounding.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from distillab.teacher.command import add_no_verify_flag
from distillab.errors import ConfigError
from distillab.train.config import TrainConfig

ARM_HELP = (
    "an arm to train (repeatable): objectives joined by '+', each NAME[:key=value,...]: vanilla | "
    "kd[:T=4,alpha=0.7] | hard_kd[:alpha=0.7] | label_smoothing[:epsilon=0.1] | hidden_mse | rkd | crd_lite | "
    "attention_kl | attention_mse | attention_transfer | minilm_relations (docs/objectives.md), each with "
    "weight=W; e.g. 'kd+rkd:weight=0.5,name=kd_rkd'. name=NAME chooses its folder, tail=bucket for top-k "
    "caches (default: vanilla, plus kd when --cache is given)"
)
# TrainConfig fields with hand-written flags (or none).
_SPECIAL = {"eval_splits"}


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train students, one folder per arm (same seed, data order, settings; only the loss differs)",
        description="Train a student under one or more arms and write model/, predictions/<split>.npz(+.json), "
                    "train_log.json and resolved_config.json in OUT/<arm>/. Arms: " + ARM_HELP,
    )
    _add_common(train)
    train.add_argument("--arm", action="append", default=None, metavar="SPEC", help=ARM_HELP)
    train.set_defaults(func=train_command)

    grid = subparsers.add_parser(
        "grid",
        help="train the KD temperature x alpha grid from one teacher cache (plus the vanilla baseline)",
        description="One kd arm per (T, alpha) pair, named kd_T{T}_a{alpha}, plus vanilla unless --no-baseline.",
    )
    _add_common(grid)
    grid.add_argument("--T", default="1,4,8", metavar="LIST", help="KD temperatures, comma-separated (default 1,4,8)")
    grid.add_argument("--alpha", default="0.7,0.9", metavar="LIST", help="KD weights, comma-separated (default 0.7,0.9)")
    grid.add_argument("--no-baseline", action="store_true", help="do not train the vanilla arm")
    grid.add_argument("--arm", action="append", default=None, metavar="SPEC", help="extra arms to train alongside")
    grid.set_defaults(func=grid_command)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="NAME_OR_SPEC",
                        help="lab dataset (r52, banking77, cfpb-issue-113), dataset spec (.yaml/.json or inline "
                             "JSON), local file/folder, or Hub id")
    parser.add_argument("--data-dir", default=None, help="where lab dataset files are looked up first")
    parser.add_argument("--cache", default=None, metavar="DIR", help="teacher cache directory (needed by kd/hard_kd)")
    add_no_verify_flag(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder; each arm writes OUT/<arm>/")
    parser.add_argument("--eval-split", action="append", default=None, metavar="SPLIT",
                        help="split to write predictions for (repeatable; default: test)")
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name in _SPECIAL:
            continue
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            type=_parser_for(hints[field.name]),
            default=argparse.SUPPRESS,  # absent, not None: 'none' is a value (e.g. --max-grad-norm none)
            metavar=field.name.upper(),
            help=f"{field.metadata['help']} (default: {field.default})",
        )


def _parser_for(hint):
    """int/float/str from the annotation; ``X | None`` accepts 'none' as None.

    Never fails: text that is not a number of the right kind stays as it is (or a float), and
    :meth:`TrainConfig.problems` reports it with every other bad flag on one line, instead of
    argparse's usage block. '1e20' for an integer flag is the integer it names.
    """
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    optional = type(None) in typing.get_args(hint)

    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        if base is str:
            return text
        try:
            return base(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if base is int and number.is_integer() else number

    parse.__name__ = getattr(base, "__name__", "value")
    return parse


def _flag(field_name: str) -> str:
    return "--eval-split" if field_name == "eval_splits" else "--" + field_name.replace("_", "-")


def _config_from_args(args) -> TrainConfig:
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
             if f.name not in _SPECIAL and hasattr(args, f.name)}
    if args.eval_split:
        given["eval_splits"] = tuple(args.eval_split)
    config = TrainConfig(**given)
    problems = config.problems(_flag)
    if problems:
        raise ConfigError("invalid training flags: " + "; ".join(problems))
    return config


def _load(args):
    from distillab.teacher.command import resolve_data

    return resolve_data(args.data, data_dir=args.data_dir)


def _open_cache(args):
    """``--cache``, opened once here so ``--no-verify-cache`` applies (None when not given)."""
    from distillab.teacher.cache import TeacherCache

    return TeacherCache.open(args.cache, verify=args.verify_cache) if args.cache else None


def train_command(args) -> int:
    from distillab.train.arms import parse_arm
    from distillab.train.trainer import train_arms

    config = _config_from_args(args)
    arm_specs = args.arm or (["vanilla", "kd"] if args.cache else ["vanilla"])
    arms = [parse_arm(spec) for spec in arm_specs]
    train_arms(_load(args), arms, config, args.out, cache=_open_cache(args))
    return 0


def grid_command(args) -> int:
    from distillab.train.grid import parse_floats, run_grid

    config = _config_from_args(args)
    T, alpha = parse_floats(args.T, "--T"), parse_floats(args.alpha, "--alpha")
    run_grid(_load(args), config, args.out, _open_cache(args), T=T, alpha=alpha,
             baseline=not args.no_baseline, extra=tuple(args.arm or ()))
    return 0
