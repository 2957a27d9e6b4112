"""``distillab run [CONFIG]`` and ``distillab validate CONFIG``."""

from __future__ import annotations

import argparse

# Objectives that read only logits: validating them needs no model or cache sizes.
LOGIT_ONLY = ("vanilla", "label_smoothing", "kd", "hard_kd")


def register(subparsers) -> None:
    from distillab.config import STAGES
    from distillab.teacher.command import add_no_verify_flag

    run = subparsers.add_parser(
        "run",
        help="run every stage of an experiment from one YAML config (default: the embedded R52 demo)",
        description="Run data → teacher cache → students → calibration → audit → report from one config. "
        "Stages whose outputs exist and were made from the same inputs are skipped, so an interrupted run "
        "resumes; a stage whose inputs changed runs again, with every stage after it.",
    )
    run.add_argument("config", nargs="?", default=None,
                     help="experiment YAML (default: the embedded demo, see `distillab run --show-default`)")
    run.add_argument("--out", default=None, help="override the config's output_dir")
    run.add_argument("--restart", choices=STAGES, default=None, metavar="STAGE",
                     help=f"redo STAGE and every stage after it even if up to date ({', '.join(STAGES)}; "
                     "'teacher' also rebuilds a teacher cache the run made itself)")
    run.add_argument("--show-default", action="store_true", help="print the embedded default config and exit")
    add_no_verify_flag(run)
    run.set_defaults(func=_run)

    validate = subparsers.add_parser(
        "validate", help="check an experiment config without running it (lists every problem at once)",
    )
    validate.add_argument("config", help="experiment YAML")
    validate.set_defaults(func=_validate)


def _run(args: argparse.Namespace) -> int:
    from distillab.config import DEFAULT_CONFIG, load_config

    if args.show_default:
        print(DEFAULT_CONFIG.read_text(encoding="utf-8"), end="")
        return 0
    lm = _lm_config(args.config)
    if lm is not None:
        from distillab.lm.pipeline import run_lm

        if args.out:
            lm.output_dir = args.out
        print(f"report: {run_lm(lm, restart=args.restart, verify_cache=args.verify_cache)}")
        return 0
    config = load_config(args.config)
    if args.out:
        config.output_dir = args.out
    from distillab.pipeline import run

    report = run(config, restart=args.restart, verify_cache=args.verify_cache)
    print(f"report: {report}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from distillab.config import load_config

    from distillab.errors import ConfigError
    from distillab.objectives.dims import dims_from_config

    lm = _lm_config(args.config)
    if lm is not None:
        from distillab.lm.validate import validate_lm

        print(validate_lm(lm))
        return 0
    config = load_config(args.config)
    arms = config.parsed_arms()
    if any(term.objective.name not in LOGIT_ONLY for arm in arms for term in arm.terms):
        dims = dims_from_config(config)
        problems = [f"arms: arm {arm.name!r}: {problem}" for arm in arms for term in arm.terms
                    for problem in term.objective.resolve(dims)]
        if problems:
            raise ConfigError(f"{args.config}: " + "; ".join(problems))
        if config.train_config().live_teacher and any(t.objective.reads().live for arm in arms for t in arm.terms):
            from distillab.objectives.dims import check_token_alignment

            check_token_alignment(config)  # every training row, both tokenizers (seconds; no weights loaded)
    parts = [f"{len(arms)} arms: {', '.join(a.name for a in arms)}"]
    stages = [schedule.audit_name(stage) for schedule in config.schedules() for stage in schedule.stages]
    if stages:
        parts.append(f"{len(stages)} schedule stages: {', '.join(stages)}")
    if config.quantize.arms:
        parts.append(f"int8 copies: {', '.join(name + '-int8' for name in config.quantize.arms)}")
    print(f"{args.config}: valid ({'; '.join(parts)}; output: {config.output_dir})")
    return 0


def _lm_config(path):
    """The LM config at ``path`` (top-level ``kind: lm``, see distillab.lm.config), or None for a classification one."""
    if path is None:
        return None
    from distillab.errors import ConfigError
    from distillab.io import load_yaml
    from distillab.lm.config import is_lm_config, lm_config_from_dict

    raw = load_yaml(path, ConfigError)
    return lm_config_from_dict(raw, source=str(path)) if is_lm_config(raw) else None
