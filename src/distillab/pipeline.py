"""``distillab run``: every stage of one experiment, in data-flow order, nothing hidden.

data → teacher cache → students (all arms + grid) → teacher predictions → audit (calibration
inside) → fitted temperatures saved beside each student → report. Each stage writes files the next
one reads, and a stage whose outputs already exist *and* were made from the same inputs is skipped,
so an interrupted run resumes where it stopped (training itself also resumes mid-arm from
checkpoints). A stage's stamp covers everything its outputs depend on, including the content of
what the stage before it wrote, so a changed input re-runs that stage and everything after it.
Every stage is also its own command; this module only chains them.

With ``training.seeds`` (two or more), the first seed's arms are the run's arms exactly as without
it (``arms/NAME``); each other seed S trains ``training.seed_arms`` (default: every arm) into
``arms-seedS/NAME`` with the same stamps, and the audit stage adds ``audit/seeds.json``, the
seed-to-seed variance (:mod:`distillab.audit.seeds`), which the report turns into a table.

Training schedules (``born_again``, ``chains``; :mod:`distillab.schedules`) train after the arms,
one arm per stage, each stage's teacher cache made from the predictions of the stage before; their
stages are audited beside the arms, and ``audit/schedules.json`` pairs the stages the report compares.

One run at a time writes an output folder (an ``flock`` that dies with its process); temporary
files a killed run left behind are removed, and a run that fails before any stage finished
removes the folder it created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from distillab.config import STAGES, ExperimentConfig, resolve_builtin
from distillab.errors import ConfigError, DistillabError, FingerprintMismatch, InputError
from distillab.io import check_output_dir, read_json, save_predictions, sha256_file, sidecar_path, write_json_atomic

STAMP = "stage.json"  # per stage folder: the hash of the inputs its outputs were made from
LOCK = ".distillab-run.lock"  # held (flock) by the one run writing the folder; removed when it ends
CACHE_DIR = "teacher-cache"  # a cache the run makes itself (model or import_npz): rebuilt when its spec changes
SEEDS_FILE = "seeds.json"  # in the audit folder: seed-to-seed variance, when training.seeds lists two or more
SCHEDULES_FILE = "schedules.json"  # in the audit folder: generation and chain comparisons (distillab.schedules)


def run(config: ExperimentConfig, restart: str | None = None, verify_cache: bool = True) -> Path:
    """Run (or resume) the whole experiment; return the path of ``report.html``.

    ``restart`` names a stage (see :data:`STAGES`) to redo along with every stage after it, even
    when its stamp says it is up to date. ``verify_cache=False`` skips re-hashing the teacher
    cache's shards (with a warning).
    """
    if restart is not None and restart not in STAGES:
        raise ConfigError(f"--restart: unknown stage {restart!r}; stages: {', '.join(STAGES)}")
    out = config.output_path()
    check_output_dir(out)
    started = time.perf_counter()
    redo = set(STAGES[STAGES.index(restart):]) if restart else set()
    created = _make_dir(out)
    try:
        with run_lock(out):
            try:
                report = _run_locked(config, out, redo, verify_cache)
            except BaseException:
                if created and not _any_stage_done(out):  # nothing worth resuming: leave no folder behind
                    for child in out.iterdir():
                        if child.name != LOCK:
                            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
                raise
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # removed only if empty (not if another run has started in it)
                out.rmdir()
        raise
    _say("done", f"{time.perf_counter() - started:.0f} s; report: {report}")
    return report


def _run_locked(config: ExperimentConfig, out: Path, redo: set[str], verify_cache: bool) -> Path:
    from distillab.data import load_dataset

    _remove_temporary_files(out)
    _say("data", f"loading {json.dumps(config.data)}")
    dataset = load_dataset(config.data)
    if config.eval_split not in dataset.splits:
        raise ConfigError(f"eval_split {config.eval_split!r} is not a split of the dataset "
                          f"(splits: {', '.join(dataset.splits)})")
    if (out / "config.json").exists() and read_json(out / "config.json") != _config_record(config):
        (out / "config.json").unlink()  # it would describe outputs this run is about to replace
    report = _stages(config, dataset, config.train_config(), out, redo, verify_cache)
    write_json_atomic(out / "config.json", _config_record(config))
    return report


def _stages(config: ExperimentConfig, dataset, train_config, out: Path, redo: set[str], verify_cache: bool) -> Path:
    from distillab.data import train_counts
    from distillab.schedules import train_schedules, write_comparisons

    cache = teacher_stage(config, dataset, out, rebuild="teacher" in redo, verify=verify_cache)
    arms = config.parsed_arms()
    train_stage(dataset, arms, train_config, cache, out / "arms", retrain="train" in redo)
    seeds = config.seeds()
    seed_arms = [arm for arm in arms if arm.name in config.seed_arm_names()]
    for seed in seeds[1:]:  # the same arms again with each other seed: the seed-to-seed variance
        train_stage(dataset, seed_arms, train_config.replace(seed=seed), cache, out / seed_arms_dir(seed),
                    retrain="train" in redo, label=f"seed {seed}")
    schedules = config.schedules()  # born-again generations and assistant chains: one arm per stage, every seed
    stages = train_schedules(schedules, dataset, train_config, cache, out, seeds, retrain="train" in redo,
                             verify=verify_cache)
    stage_preds = {seed: {name: folder / "predictions" / f"{config.eval_split}.npz" for name, folder in found.items()}
                   for seed, found in stages.items()}

    if config.teacher.eval_predictions:
        teacher_preds = Path(config.teacher.eval_predictions).expanduser()
    else:
        teacher_preds = teacher_predictions_stage(cache, dataset, config.eval_split, out / "teacher",
                                                  redo="teacher" in redo)
    arm_preds = {arm.name: out / "arms" / arm.name / "predictions" / f"{config.eval_split}.npz" for arm in arms}
    for arm in arms:  # an ema_kd arm's moving average and a dml arm's peer are students too: audited beside it
        for side in arm.side_students():
            arm_preds[f"{arm.name}-{side}"] = out / "arms" / arm.name / side / "predictions" / f"{config.eval_split}.npz"
    if config.baselines:  # reference rows ("what you would use instead"), audited like every arm
        from distillab.baselines import baseline_predictions_stage

        _say("baselines", ", ".join(config.baselines))
        arm_preds.update(baseline_predictions_stage(config.baselines, dataset, train_config.train_split,
                                                    config.eval_split, out / "baselines"))
    arm_preds.update(stage_preds[seeds[0]])
    if config.quantize.arms:  # int8 copies of trained students, audited as deployment candidates NAME-int8
        from distillab.quantize.stage import quantize_stage

        arm_preds.update(quantize_stage({name: out / "arms" / name for name in config.quantize.arms}, dataset,
                                        config.eval_split, backend=config.quantize.backend,
                                        n_resamples=config.audit.n_resamples, seed=config.audit.seed,
                                        redo="audit" in redo, log=lambda message: _say("quantize", message)))
    counts = train_counts(dataset, train_config.train_split)
    seed_preds = None
    if len(seeds) > 1:
        seed_preds = {seeds[0]: {arm.name: arm_preds[arm.name] for arm in seed_arms}}
        for seed in seeds[1:]:
            seed_preds[seed] = {arm.name: out / seed_arms_dir(seed) / arm.name / "predictions" / f"{config.eval_split}.npz"
                                for arm in seed_arms}
        for seed, found in stage_preds.items():
            seed_preds[seed].update(found)
    audit_dir = audit_stage(config, teacher_preds, arm_preds, counts, dataset.classes, out / "audit",
                            redo="audit" in redo, seed_preds=seed_preds)
    write_comparisons(schedules, audit_dir)
    audit = read_json(audit_dir / "audit.json")
    save_temperatures(audit, out / "arms")
    save_temperatures(audit, stages[seeds[0]])
    return report_stage(config, audit_dir, out / "report", redo="report" in redo)


# --------------------------------------------------------------------------- the output folder


def _make_dir(out: Path) -> bool:
    """Create ``out`` if needed; True if this call created it (then a failed run may remove it)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.mkdir()
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output folder ({exc.strerror})") from None


@contextlib.contextmanager
def run_lock(out: Path):
    """Hold ``out``'s run lock for the block; refuse, naming the holder, when another live run has it.

    ``flock`` is released by the kernel when its process dies, so a killed run never blocks the
    next one. The file is removed on release; a run that opened it just before that removal
    notices (its inode is gone) and tries again on the new file.
    """
    path = out / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip() or "a process that is starting"
            os.close(fd)
            raise InputError(f"{out}: another distillab run is writing this folder ({holder}); "
                             "wait for it to finish or give another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, started {stamp}".encode())
        except OSError as exc:  # a full disk or file-size limit: name the file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _remove_temporary_files(out: Path) -> None:
    """Delete ``.NAME…tmp…`` files and folders (atomic writes a killed run never renamed); safe under the lock."""
    stale = [p for p in out.rglob(".*") if ".tmp" in p.name]
    for path in sorted(stale, key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        _say("run", f"removed {len(stale)} temporary file(s) a killed run left in {out}")


def _any_stage_done(out: Path) -> bool:
    """Whether a stage (or one arm) finished: outputs worth keeping for a resumed run."""
    def complete(stamp: Path) -> bool:
        try:
            return bool(read_json(stamp).get("complete"))
        except (DistillabError, AttributeError):  # unreadable: keep the folder rather than guess
            return True

    return ((out / CACHE_DIR / "manifest.json").exists() or any(out.glob("arms/*/train_log.json"))
            or any(out.glob("arms-seed*/*/train_log.json"))
            or any(complete(stamp) for stamp in out.glob(f"*/{STAMP}") if stamp.parent.name != "arms"))


# --------------------------------------------------------------------------- stages


def teacher_stage(config: ExperimentConfig, dataset, out: Path, rebuild: bool = False, verify: bool = True):
    """The teacher cache: an existing one (checked against the data and the config), or made once here.

    A cache this run makes lives in ``out/teacher-cache``; its stamp covers the whole teacher spec,
    the imported file's or model folder's content and the dataset, so another ``import_npz`` file,
    ``temperature`` or ``model`` rebuilds it rather than reusing the old one.
    """
    from distillab.teacher.cache import PROGRESS, TeacherCache

    spec = config.teacher
    if spec.cache:
        path = resolve_builtin(spec.cache)
        _say("teacher", f"using cache {path}")
        cache = TeacherCache.open(path, verify=verify)
        cache.check_matches(dataset)
        check_teacher_identity(spec, cache)
        return cache

    path, stamp_dir = out / CACHE_DIR, out / "teacher"
    inputs = _teacher_inputs(spec, dataset)
    state = _stamp_state(stamp_dir / "cache-stage.json", inputs)
    if path.exists() and (rebuild or state == "changed" or (state is None and not (path / "manifest.json").exists())):
        why = ("--restart teacher" if rebuild else "the teacher spec changed" if state == "changed"
               else "a partial cache no run is writing")
        _say("teacher", f"removing {path} ({why}); building it again")
        shutil.rmtree(path)
    elif state is None and (path / "manifest.json").exists():
        _say("teacher", f"cache {path} has no stamp (an older distillab made it); checking it is this teacher")
    _stamp(stamp_dir, inputs, complete=False, name="cache-stage.json")
    if not (path / "manifest.json").exists():
        try:
            _build_cache(spec, dataset, path)
        except FingerprintMismatch:  # a partial cache of another plan (e.g. the Hub model moved on): start over
            if not (path / PROGRESS).exists():
                raise
            _say("teacher", f"{path} holds a partial cache of another plan; building it again")
            shutil.rmtree(path)
            _build_cache(spec, dataset, path)
    cache = TeacherCache.open(path, verify=verify)
    cache.check_matches(dataset)
    check_teacher_identity(spec, cache, inputs.get("import_sha256"))
    _stamp(stamp_dir, inputs, name="cache-stage.json")
    return cache


def _build_cache(spec, dataset, path: Path) -> None:
    if spec.model:
        from distillab.pypi_models import resolve_model_ref
        from distillab.teacher.hf_classifier import cache_classifier

        _say("teacher", f"running {spec.model} once over every split")
        cache_classifier(resolve_model_ref(spec.model), dataset, path, splits=spec.splits,
                         temperature=spec.temperature, dtype=spec.dtype,
                         batch_size=spec.batch_size, max_length=spec.max_length, features=spec.features)
    else:
        from distillab.teacher.importer import import_logits

        _say("teacher", f"importing {spec.import_npz}")
        import_logits(spec.import_npz, dataset, path, splits=spec.splits, temperature=spec.temperature,
                      already_scaled_by=spec.already_scaled_by, dtype=spec.dtype)


def _teacher_inputs(spec, dataset) -> dict:
    """Everything a run-made cache depends on: the spec, the source's content, the dataset."""
    inputs = {**dataclasses.asdict(spec), "dataset": dataset.content_hash()}
    inputs.pop("eval_predictions")  # read by the audit stage, which hashes the file itself
    if inputs["features"] is None:  # as before features existed: such runs keep their caches
        inputs.pop("features")
    if spec.import_npz:
        source = Path(spec.import_npz).expanduser()
        if not source.is_file():
            raise InputError(f"{source}: teacher.import_npz file not found")
        inputs["import_sha256"] = sha256_file(source)
    elif spec.model:
        from distillab.pypi_models import resolve_model_ref

        folder = Path(resolve_model_ref(spec.model)).expanduser()
        if folder.is_dir():  # a local model: its files' names, sizes and times (hashing GBs of weights each run is too slow)
            inputs["model_files"] = sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                                           for p in folder.rglob("*") if p.is_file())
    return inputs


def check_teacher_identity(spec, cache, source_sha256: str | None = None) -> None:
    """Refuse a cache whose recorded teacher or temperature is not the config's, naming both.

    ``source_sha256``: the ``import_npz`` file's hash when the caller already has it (not hashed twice).
    """
    from distillab.teacher.fingerprint import describe_teacher, model_identity, short_repr

    fingerprint = cache.manifest["fingerprint"]
    teacher, capture = fingerprint.get("teacher", {}), fingerprint.get("capture", {})
    if spec.import_npz:
        source = Path(spec.import_npz).expanduser()
        identity = {"source_file": source.name, "source_sha256": source_sha256 or sha256_file(source)}
        wanted = {**identity, "temperature": spec.temperature, "already_scaled_by": spec.already_scaled_by}
        recorded = {key: teacher.get(key) for key in identity} | {
            "temperature": capture.get("temperature"), "already_scaled_by": capture.get("already_scaled_by")}
    elif spec.model:
        from distillab.pypi_models import resolve_model_ref

        identity = model_identity(resolve_model_ref(spec.model))
        wanted = {**identity, "temperature": spec.temperature}
        recorded = {key: teacher.get(key) for key in identity} | {"temperature": capture.get("temperature")}
    else:  # an existing cache: only a temperature the config states can disagree with it
        if spec.temperature is None or spec.temperature == cache.temperature:
            return
        identity, wanted, recorded = teacher, {"temperature": spec.temperature}, {"temperature": cache.temperature}
    if not spec.cache:
        wanted["dtype"], recorded["dtype"] = spec.dtype, cache.manifest.get("dtype")
    if wanted != recorded:
        differs = "; ".join(f"{key}: config {short_repr(wanted[key])}, cache {short_repr(recorded[key])}"
                            for key in wanted if wanted[key] != recorded[key])
        fix = ("point teacher.cache at a cache of the configured teacher" if spec.cache
               else "rerun with --restart teacher to rebuild it")
        raise FingerprintMismatch(f"{cache.path}: the cache holds {describe_teacher(teacher)}, but the config's "
                                  f"teacher is {describe_teacher(identity)} ({differs}); {fix}")


def seed_arms_dir(seed: int) -> str:
    """The folder of the arms trained with a seed other than the primary one (``training.seeds``)."""
    return f"arms-seed{seed}"


def train_stage(dataset, arms: list, train_config, cache, arms_dir: Path, retrain: bool = False,
                label: str | None = None) -> None:
    """Train every arm; an arm whose recorded inputs differ from this run's is removed and trained again.

    An arm's inputs are the training settings, its recipe, the dataset and (for arms that read the
    teacher) the cache's fingerprint. They are recorded before training, so a killed run resumes
    its arms while a changed config starts them over. Arms with no record (made by an older
    distillab) are left to the trainer, which skips them when their settings match and refuses
    otherwise. The primary seed's arms go to ``arms/``, each other seed's to ``arms-seedS/`` (same
    logic, the seed being one of the training settings); ``label`` names the seed in the log.
    """
    from distillab.train.trainer import train_arms

    _say("train", f"{label + ': ' if label else ''}{len(arms)} arms: {', '.join(arm.name for arm in arms)}")
    stamp = arms_dir / STAMP
    recorded = read_json(stamp).get("arms", {}) if stamp.exists() else {}
    fingerprint = _sha256_json(cache.manifest["fingerprint"]) if cache is not None else None
    content, done = dataset.content_hash(), []
    for arm in arms:
        digest = _digest({"training": arm.training_settings(train_config), "arm": arm.name, "recipe": arm.recipe(),
                          "dataset": content, "teacher": fingerprint if arm.needs_teacher else None})
        arm_dir = arms_dir / arm.name
        if arm_dir.exists() and (retrain or recorded.get(arm.name, digest) != digest):
            _say("train", f"{arm.name}: {'--restart train' if retrain else 'its inputs changed'}; training it again")
            shutil.rmtree(arm_dir)
        elif recorded.get(arm.name) == digest and (arm_dir / "train_log.json").is_file():
            done.append(arm)  # finished from these very inputs (the record is the trainer's resolved config's source)
        recorded[arm.name] = digest
    write_json_atomic(stamp, {"arms": recorded})
    if len(done) == len(arms):  # nothing to train: skip the trainer's set-up (featurising every split)
        for arm in arms:
            _say("train", f"{arm.name}: already trained in {arms_dir / arm.name} (same inputs); skipped")
        return
    train_arms(dataset, arms, train_config, arms_dir, cache=cache)


def teacher_predictions_stage(cache, dataset, split: str, out: Path, redo: bool = False) -> Path:
    """The teacher's rows of the evaluation split as a predictions file: the audit's ``teacher`` arm."""
    rows = dataset.splits[split]
    path = out / "predictions" / f"{split}.npz"
    inputs = {"cache": cache.manifest.get("fingerprint"), "split": split, "dataset": dataset.content_hash()}
    if not redo and _fresh(out, inputs) and path.exists():
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
        # the fingerprint every arm it taught records as teacher_cache (the T × α grid compares only those)
        "cache_fingerprint_sha256": _sha256_json(cache.manifest["fingerprint"]),
    }
    _stamp(out, inputs, complete=False)
    save_predictions(path, cache.logits(rows.ids), rows.labels, ids=rows.ids, meta=meta)
    _stamp(out, inputs)
    return path


def audit_stage(config: ExperimentConfig, teacher: Path, arms: dict[str, Path], train_counts, classes, out: Path,
                redo: bool = False, seed_preds: dict[int, dict[str, Path]] | None = None) -> Path:
    """Audit every arm against the baseline (paired bootstrap, calibration, coverage, transfer tests).

    The training counts the tiers rank by go to ``out/train_counts.json`` (class name → rows), the
    ``--train-counts`` file a standalone ``distillab audit`` replays this audit with.
    ``seed_preds`` (seed → {arm: predictions file}, two or more seeds, the primary first) adds
    ``out/seeds.json``, the seed-to-seed variance (:mod:`distillab.audit.seeds`); without it no such
    file remains and the stamp's inputs are exactly those of a run without seeds.
    """
    from distillab.audit import audit

    settings = config.audit
    counts_path = out / "train_counts.json"
    write_json_atomic(counts_path, {name: int(c) for name, c in zip(classes, train_counts)})
    inputs = {
        "files": {name: _file_digest(path) for name, path in {"teacher": teacher, **arms}.items()},
        "audit": dataclasses.asdict(settings),
        "tiers": dataclasses.asdict(config.tiers),
        "calibration": dataclasses.asdict(config.calibration),
        "train_counts": [int(c) for c in train_counts],
    }
    seeds_path = out / SEEDS_FILE
    if seed_preds:
        inputs["seeds"] = {str(seed): {name: _file_digest(path) for name, path in files.items()}
                           for seed, files in seed_preds.items()}
    if not redo and _fresh(out, inputs) and (out / "audit.json").exists() and (seeds_path.exists() or not seed_preds):
        _say("audit", f"{out / 'audit.json'} is up to date")
        return out
    _say("audit", f"{len(arms)} arms + teacher, {settings.n_resamples} bootstrap resamples"
         + (f"; seed variance over seeds {', '.join(map(str, seed_preds))}" if seed_preds else ""))
    _stamp(out, inputs, complete=False)
    seeds_path.unlink(missing_ok=True)  # never beside an audit.json it was not made with
    result = audit(
        arms=arms,
        baseline=settings.baseline,
        teacher=teacher,
        distilled=settings.distilled,
        train_counts=counts_path,
        tier_cutoffs=tuple(config.tiers.cutoffs) if config.tiers.cutoffs else None,
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
        optimizer=config.calibration.optimizer,
    )
    if seed_preds:
        from distillab.audit.seeds import seed_variance

        base = settings.baseline
        fixed = {base: arms[base]} if all(base not in files for files in seed_preds.values()) else None
        write_json_atomic(seeds_path, seed_variance(
            seed_preds, baseline=base, bins=settings.bins, fixed=fixed,
            tiers={tier: block["classes"] for tier, block in result["tiers"].items()}))
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


def save_temperatures(audit: dict, arms_dir: Path | dict[str, Path]) -> None:
    """Keep each student's fitted temperature beside its weights: deployment needs ``softmax(z / T)``.

    ``arms_dir``: the folder of arms named as audited, or {audit name: arm folder} (schedule stages).
    """
    for name, record in audit.get("calibration", {}).items():
        folder = arms_dir.get(name) if isinstance(arms_dir, dict) else arms_dir / name
        model_dir = folder / "model" if folder is not None else None
        if model_dir is not None and model_dir.is_dir():
            write_json_atomic(model_dir / "temperature.json", {
                "temperature": record["temperature"],
                "fit_split": record.get("fit_split"),
                "how": "post-hoc temperature scaling (distillab audit); apply as softmax(logits / temperature)",
            })


def report_stage(config: ExperimentConfig, audit_dir: Path, out: Path, redo: bool = False) -> Path:
    from distillab.report import render_report

    inputs = {"audit": _json_digest(audit_dir / "audit.json"), "report": dataclasses.asdict(config.report)}
    for key, name in (("seeds", SEEDS_FILE), ("schedules", SCHEDULES_FILE)):  # tables a plain run has not
        if (audit_dir / name).exists():  # (absent: a run without them keeps its stamp)
            inputs[key] = _json_digest(audit_dir / name)
    html = out / "report.html"
    if not redo and _fresh(out, inputs) and html.exists():
        _say("report", f"{html} is up to date")
        return html
    _stamp(out, inputs, complete=False)
    scenarios_path = None
    if config.report.scenarios is not None:
        scenarios_path = out / "scenarios.json"
        write_json_atomic(scenarios_path, config.report.scenarios)
    _say("report", "rendering")
    render_report(audit_dir, out_dir=out, scenarios_path=scenarios_path, title=config.report.title)
    _stamp(out, inputs)
    return html


# --------------------------------------------------------------------------- helpers


def _config_record(config: ExperimentConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


MEASUREMENTS = "measurements"  # JSON key of timings and other measured (not computed) values


def _file_digest(path: Path) -> dict:
    """A predictions file's content and its sidecar's (the audit reads both)."""
    sidecar = sidecar_path(path)
    return {"npz": sha256_file(path), "sidecar": _json_digest(sidecar) if sidecar.is_file() else None}


def _json_digest(path: Path) -> str:
    """Hash of a JSON file without its measurements: timer noise must not make a stage look changed."""
    return _sha256_json(_without_measurements(read_json(path)))


def _without_measurements(value):
    if isinstance(value, dict):
        return {k: _without_measurements(v) for k, v in value.items() if k != MEASUREMENTS}
    if isinstance(value, list):
        return [_without_measurements(v) for v in value]
    return value


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _digest(inputs: dict) -> str:
    """Hash of a stage's inputs; the tool version is one of them (a new release recomputes)."""
    from distillab import __version__

    return _sha256_json({**inputs, "tool_version": __version__})


def _stamp_state(stamp: Path, inputs: dict) -> str | None:
    """``"done"``, ``"started"`` (same inputs, not finished), ``"changed"`` (other inputs) or None (no stamp)."""
    if not stamp.exists():
        return None
    record = read_json(stamp)
    if record.get("inputs_sha256") != _digest(inputs):
        return "changed"
    return "done" if record.get("complete", True) else "started"


def _fresh(folder: Path, inputs: dict) -> bool:
    return _stamp_state(folder / STAMP, inputs) == "done"


def _stamp(folder: Path, inputs: dict, complete: bool = True, name: str = STAMP) -> None:
    """Record the inputs a stage's outputs are (``complete``) or are being (not yet) made from."""
    write_json_atomic(folder / name, {"inputs_sha256": _digest(inputs), "complete": complete})


def _say(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", file=sys.stderr, flush=True)
