"""Training schedules: born-again generations and teacher-assistant chains, every stage an audited arm.

A schedule is a sequence of stages, each one student trained by :func:`distillab.pipeline.train_stage`
exactly as an arm is (same stamps, same resume). Stage k+1's teacher cache is stage k's predictions
on the training split, imported by :func:`distillab.teacher.importer.import_logits`, so it is
fingerprinted by that file's sha256 and checksummed like any teacher cache. ``train_stage`` stamps
each arm with its cache's fingerprint: a stage whose teacher changed trains again, and so does every
stage after it, while untouched earlier stages are skipped.

- ``born_again: [{name, arm, generations}]`` (Furlanello et al., 2018): generation 1 distils from the
  run's teacher, generation g+1 (same student, same objective) from generation g. Audited as
  ``NAME-g1``, ``NAME-g2``, ...
- ``chains: [{name, compare_with, stages: [{name, arm, training}]}]`` (Mirzadeh et al., 2020): the
  run's teacher → assistant(s) → student. ``training`` overrides the run's training settings for one
  stage (a bigger assistant: ``{bow_dim: 256}``). The last stage is the student; it must train exactly
  as the arm ``compare_with`` (same settings and recipe), so the two differ only in who taught them.
  Audited as ``NAME-STAGE``.

A stage's ``arm`` is any arm that reads only the teacher's logits; a ``name=`` in it is ignored (the
schedule names its stages). A stage's cache holds its raw logits in float32 (no rounding) and records no temperature (T = 1):
the next stage's objective softens them with its own T, as it does the run's teacher. Every stage
predicts the training split besides the evaluation splits, the last too, so a stage's settings (and
its stamp) do not depend on whether a stage follows it.

Layout: ``out/born-again/NAME/g1/`` (an arm folder), ``out/born-again/NAME/g1-cache/`` (g2's teacher),
``out/chains/NAME/STAGE/`` and ``STAGE-cache/``; with ``training.seeds`` each other seed S runs every
schedule (``seed_arms`` restricts arms only) into ``born-again-seedS/`` and ``chains-seedS/``, and
the stages join ``audit/seeds.json``.
After the audit, ``audit/schedules.json`` lists the comparisons the report shows: each generation
against the one before (and the last against the first), each chain's student against its
``compare_with`` arm, as the audit's paired bootstrap between them (``candidate_bootstrap``) and,
with several seeds, the seed-paired Δ.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import typing
from dataclasses import dataclass
from pathlib import Path

from distillab.config import _expected, _shown, _type_ok
from distillab.errors import DistillabError
from distillab.io import read_json, sha256_file, write_json_atomic

FOLDERS = {"born_again": "born-again", "chains": "chains"}  # config section → output folder
BORN_AGAIN_KEYS = ("name", "arm", "generations")
CHAIN_KEYS = ("name", "compare_with", "stages")
STAGE_KEYS = ("name", "arm", "training")
# The run's settings, never one stage's: the seed (training.seeds runs every schedule per seed), the
# split each next cache is made from, and the splits predicted (the schedule sets them).
RUN_SETTINGS = ("seed", "train_split", "eval_splits")
PREDICTION_SETTINGS = ("eval_splits", "eval_batch_size")  # what is predicted, never how the student trains
MAX_GENERATIONS = 50
CACHE_DTYPE = "fp32"
SCOPES = ("overall", "head", "mid", "tail")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # a folder and part of an audit arm name (fullmatch: '$' lets '\n' end a name)


@dataclass(frozen=True)
class Stage:
    folder: str  # the stage's folder and the suffix of its audit name: g1, assistant
    arm: typing.Any  # a distillab.train.arms.Arm, named ``folder``
    training: dict  # overrides of the run's training settings (model references resolved)


@dataclass(frozen=True)
class Schedule:
    section: str  # born_again or chains
    where: str  # its key path in the config: born_again[0]
    name: str
    stages: tuple[Stage, ...]
    compare_with: str | None = None

    def audit_name(self, stage: Stage) -> str:
        return f"{self.name}-{stage.folder}"

    def folder(self, out: Path, seed: int | None = None) -> Path:
        """Its folder under the run's ``out``; ``seed`` for a seed other than the primary one."""
        return out / (FOLDERS[self.section] + ("" if seed is None else f"-seed{seed}")) / self.name

    def pairs(self) -> list[tuple[str, str]]:
        """(arm, against) audit names: each generation vs the one before and the last vs the first; a chain's
        student vs its ``compare_with`` arm."""
        names = [self.audit_name(stage) for stage in self.stages]
        if self.section == "chains":
            return [(names[-1], self.compare_with)]
        return list(zip(names[1:], names)) + ([(names[-1], names[0])] if len(names) > 2 else [])


# --------------------------------------------------------------------------- the config sections


def parse_schedules(config, training_valid: bool = True) -> tuple[list[Schedule], list[str]]:
    """The config's schedules, and every problem with them (one message each, naming its key path).

    ``training_valid=False``: the run's training settings have problems (reported under training:), so
    the stages' settings, which extend them, are not checked.
    """
    problems: list[str] = []
    base = config.train_config() if training_valid else None
    try:
        arms = {arm.name: arm for arm in config.parsed_arms()}
    except DistillabError:  # reported under arms:
        arms = None
    schedules = [_born_again(entry, f"born_again[{i}]", problems) for i, entry in enumerate(config.born_again)]
    schedules += [_chain(entry, f"chains[{i}]", base, arms, problems) for i, entry in enumerate(config.chains)]
    schedules = [s for s in schedules if s is not None]
    if arms is not None:
        problems += _clashes(schedules, arms, config.baselines, config.quantize.arms)
    return schedules, problems


def _born_again(entry, where: str, problems: list[str]) -> Schedule | None:
    if not _keys(entry, BORN_AGAIN_KEYS, BORN_AGAIN_KEYS, where, problems):
        return None
    name, arm = _name(entry["name"], f"{where}.name", problems), _arm(entry["arm"], f"{where}.arm", problems)
    generations = entry["generations"]
    if not (_type_ok(generations, int) and 1 <= generations <= MAX_GENERATIONS):
        problems.append(f"{where}.generations: must be an integer in [1, {MAX_GENERATIONS}], got {_shown(generations)}")
        return None
    if name is None or arm is None:
        return None
    stages = tuple(Stage(f"g{g}", dataclasses.replace(arm, name=f"g{g}"), {}) for g in range(1, generations + 1))
    return Schedule("born_again", where, name, stages)


def _chain(entry, where: str, base, arms: dict | None, problems: list[str]) -> Schedule | None:
    if not _keys(entry, CHAIN_KEYS, CHAIN_KEYS, where, problems):
        return None
    name = _name(entry["name"], f"{where}.name", problems)
    given = entry["stages"]
    if not (isinstance(given, list) and all(isinstance(s, dict) for s in given)):
        problems.append(f"{where}.stages: must be a list of mappings, got {_shown(given)}")
        return None
    if len(given) < 2:
        problems.append(f"{where}.stages: a chain needs at least 2 stages (one or more assistants, then the "
                        f"student), got {len(given)}")
        return None
    stages = [_stage(spec, f"{where}.stages[{j}]", base, problems) for j, spec in enumerate(given)]
    if name is None or None in stages:
        return None
    folders = [stage.folder for stage in stages]
    twice = sorted({f for f in folders if folders.count(f) > 1})
    problems += [f"{where}.stages: the stage name {f!r} is used twice" for f in twice]
    chain = Schedule("chains", where, name, tuple(stages), entry["compare_with"])
    found = _comparison_problems(chain, base, arms)
    problems += found
    return None if twice or found else chain


def _stage(spec: dict, where: str, base, problems: list[str]) -> Stage | None:
    if not _keys(spec, STAGE_KEYS, ("name", "arm"), where, problems):
        return None
    name, arm = _name(spec["name"], f"{where}.name", problems), _arm(spec["arm"], f"{where}.arm", problems)
    given = spec.get("training")  # null: no overrides; [] or 0 is not a mapping (never read as none)
    training = _overrides({} if given is None else given, f"{where}.training", base, problems)
    if name is None or arm is None or training is None:
        return None
    return Stage(name, dataclasses.replace(arm, name=name), training)


def _comparison_problems(chain: Schedule, base, arms: dict | None) -> list[str]:
    """The chain's student must train as its ``compare_with`` arm does, so only the teacher differs."""
    target, where = chain.compare_with, f"{chain.where}.compare_with"
    if not isinstance(target, str):
        return [f"{where}: must name an arm, got {_shown(target)}"]
    if arms is None:
        return []
    if target not in arms:
        return [f"{where}: {target!r} is not an arm (arms: {', '.join(arms)})"]
    last, found = chain.stages[-1], []
    if base is not None:
        run, student = base.to_dict(), base.replace(**last.training).to_dict()
        differ = [f"{key}: {run[key]!r} vs {student[key]!r}" for key in run
                  if key not in PREDICTION_SETTINGS and run[key] != student[key]]
        if differ:
            found.append(f"{where}: {target!r} trains with other settings than the chain's student (last stage "
                         f"{last.folder!r}: {'; '.join(differ)}); they must differ only in their teacher")
    if arms[target].recipe() != last.arm.recipe():
        found.append(f"{where}: {target!r} has recipe {arms[target].recipe()} but the chain's student (last stage "
                     f"{last.folder!r}) has {last.arm.recipe()}; they must differ only in their teacher")
    return found


def _keys(entry, keys: tuple, required: tuple, where: str, problems: list[str]) -> bool:
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a mapping with {', '.join(keys)}, got {_shown(entry)}")
        return False
    unknown = sorted(set(entry) - set(keys), key=str)
    missing = [key for key in required if key not in entry]
    if unknown:
        problems.append(f"{where}: unknown key(s) {unknown}; valid: {', '.join(keys)}")
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
    return not unknown and not missing


def _name(value, where: str, problems: list[str]) -> str | None:
    if isinstance(value, str) and _NAME.fullmatch(value):
        return value
    problems.append(f"{where}: must be a name of letters, digits, '_', '-' and '.', got {_shown(value)}")
    return None


def _arm(spec, where: str, problems: list[str]):
    """The stage's arm: one student distilled from logits (a stage's teacher is the stage before's logits)."""
    from distillab.train.arms import arm_from_config

    try:
        arm = arm_from_config(spec)
    except DistillabError as exc:
        problems.append(f"{where}: {exc}")
        return None
    if not arm.needs_teacher:
        problems.append(f"{where}: {arm.loss} reads no teacher; a stage distils from the stage before it")
        return None
    from distillab.objectives.base import Reads

    # The stage before's cache holds logits only; training options such as fake_quant are fine.
    if any(term.objective.reads() not in (Reads(), Reads(teacher_logits=True)) for term in arm.terms):
        problems.append(f"{where}: {arm.loss} reads more than the teacher's logits (hidden states, a live teacher, "
                        "a moving average or a peer); a stage's teacher is the logits of the stage before it")
        return None
    return arm


def _overrides(values, where: str, base, problems: list[str]) -> dict | None:
    """A stage's ``training`` overrides, checked like the run's; model references resolved."""
    from distillab.pypi_models import resolve_model_ref
    from distillab.train.config import TrainConfig

    if not isinstance(values, dict):
        problems.append(f"{where}: must be a mapping of training settings, got {_shown(values)}")
        return None
    hints = typing.get_type_hints(TrainConfig)
    valid = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in RUN_SETTINGS]
    found = [f"{where}.{key}: the run's setting, the same for every stage (set it under training:)"
             for key in values if key in RUN_SETTINGS]
    unknown = sorted(set(values) - set(hints), key=str)
    if unknown:
        found.append(f"{where}: unknown setting(s) {unknown}; valid: {', '.join(valid)}")
    found += [f"{where}.{key}: {_expected(hints[key])}, got {_shown(value)}" for key, value in values.items()
              if key in valid and not _type_ok(value, hints[key])]
    if not found and base is not None:
        try:
            values = {**values, **({"student": resolve_model_ref(values["student"])} if "student" in values else {})}
        except DistillabError as exc:
            found.append(f"{where}.student: {exc}")
        else:
            found += base.replace(**values).problems(name=lambda key: f"{where}.{key}")
    problems += found
    return None if found else dict(values)


def _clashes(schedules: list[Schedule], arms: dict, baselines: list[str], quantized: list[str]) -> list[str]:
    """Every stage's audit name must be new: not an arm, a side student, a baseline, an int8 copy or another stage."""
    from distillab.config import audit_names

    taken = audit_names(arms.values(), baselines, quantized)
    found, named = [], set()
    for schedule in schedules:
        if (schedule.section, schedule.name) in named:
            found.append(f"{schedule.where}.name: {schedule.name!r} names another {schedule.section} entry too")
            continue
        named.add((schedule.section, schedule.name))
        for stage in schedule.stages:
            name = schedule.audit_name(stage)
            if name in taken:
                found.append(f"{schedule.where}: its stage {stage.folder!r} is audited as {name!r}, already "
                             f"{taken[name]}; rename the {'chain or the stage' if schedule.section == 'chains' else 'schedule'}")
            taken.setdefault(name, f"a stage of {schedule.where}")
    return found


# --------------------------------------------------------------------------- training


def train_schedules(schedules: list[Schedule], dataset, train_config, cache, out: Path, seeds: list[int],
                    retrain: bool = False, verify: bool = True) -> dict[int, dict[str, Path]]:
    """Train every schedule with every seed (the first is the primary); seed → {audit name: arm folder}."""
    folders: dict[int, dict[str, Path]] = {}
    for i, seed in enumerate(seeds):
        folders[seed] = {}
        for schedule in schedules:
            label = f"{FOLDERS[schedule.section]} {schedule.name}" + (f", seed {seed}" if i else "")
            folders[seed].update(_train(schedule, dataset, train_config.replace(seed=seed), cache,
                                        schedule.folder(out, seed if i else None), retrain, verify, label))
    return folders


def _train(schedule: Schedule, dataset, train_config, cache, folder: Path, retrain: bool, verify: bool,
           label: str) -> dict[str, Path]:
    from distillab.pipeline import train_stage

    split = train_config.train_split
    splits = tuple(dict.fromkeys((split, *train_config.eval_splits)))
    trained, teacher = {}, cache
    for before, stage in zip((None, *schedule.stages), schedule.stages):
        if before is not None:
            teacher = predictions_cache(folder / before.folder / "predictions" / f"{split}.npz", dataset, split,
                                        folder / f"{before.folder}-cache", schedule.audit_name(before), verify)
        settings = train_config.replace(**stage.training, eval_splits=splits)
        train_stage(dataset, [stage.arm], settings, teacher, folder, retrain=retrain, label=label)
        trained[schedule.audit_name(stage)] = folder / stage.folder
    return trained


def predictions_cache(source: Path, dataset, split: str, path: Path, name: str, verify: bool = True):
    """A stage's ``split`` logits as the next stage's teacher cache, rebuilt whenever the file changes.

    The cache's fingerprint records the file's sha256 (see :func:`import_logits`), so the next stage,
    stamped with it, trains again exactly when this stage's predictions changed.
    """
    from distillab.pipeline import _say, _stamp, _stamp_state
    from distillab.teacher.cache import TeacherCache
    from distillab.teacher.importer import import_logits

    inputs = {"source_sha256": sha256_file(source), "split": split, "dataset": dataset.content_hash(),
              "dtype": CACHE_DTYPE}
    stamp = f"{path.name}.json"
    if path.exists() and _stamp_state(path.parent / stamp, inputs) != "done":
        shutil.rmtree(path)
    if not path.exists():
        _say("train", f"{name}'s {split} predictions → teacher cache {path}")
        _stamp(path.parent, inputs, complete=False, name=stamp)
        import_logits(source, dataset, path, splits=[split], teacher_name=name, dtype=CACHE_DTYPE, progress=False)
        _stamp(path.parent, inputs, name=stamp)
    return TeacherCache.open(path, verify=verify)


# --------------------------------------------------------------------------- comparisons


def write_comparisons(schedules: list[Schedule], audit_dir: Path) -> None:
    """``audit_dir/schedules.json`` for the report (rewritten only when it changes; removed without schedules)."""
    from distillab.pipeline import SCHEDULES_FILE, SEEDS_FILE

    path = audit_dir / SCHEDULES_FILE
    if not schedules:
        path.unlink(missing_ok=True)
        return
    seeds = audit_dir / SEEDS_FILE
    data = comparisons(schedules, read_json(audit_dir / "audit.json"), read_json(seeds) if seeds.exists() else None)
    if not path.exists() or read_json(path) != data:
        write_json_atomic(path, data)


def comparisons(schedules: list[Schedule], audit: dict, seeds: dict | None = None) -> dict:
    """Macro-F1 of each pair, overall and per tier: the audit's paired bootstrap between the two (same
    resamples as every other CI of the audit) and, when ``seeds`` (``seeds.json``) holds both, the
    seed-paired Δ with its t interval over seeds."""
    from distillab.audit.bootstrap import verdict
    from distillab.audit.seeds import _paired

    f1 = audit["candidate_bootstrap"]["f1"]
    index = {name: i for i, name in enumerate(f1["candidates"])}

    def score(arm: str, scope: str) -> float | None:
        block = audit["arms"][arm]
        return (block["overall"] if scope == "overall" else block["tiers"][scope])["macro_f1"]

    records = []
    for schedule in schedules:
        for arm, against in schedule.pairs():
            i, j = index[arm], index[against]
            record = {"schedule": schedule.name, "section": schedule.section, "arm": arm, "against": against,
                      "macro_f1": {scope: [score(arm, scope), score(against, scope)] for scope in SCOPES},
                      "bootstrap": {}, "seeds": None}
            for scope in SCOPES:
                stats = f1["groups"][scope]["macro_f1"]
                low, high = stats["ci_low"][i][j], stats["ci_high"][i][j]
                record["bootstrap"][scope] = {"median": stats["median"][i][j], "ci_low": low, "ci_high": high,
                                              "excludes_zero": bool(low > 0 or high < 0),
                                              "verdict": verdict(low, high, "macro_f1")}
            if seeds is not None and arm in seeds["arms"] and against in seeds["arms"]:
                values = {name: seeds["arms"][name]["values"] for name in (arm, against)}
                record["seeds"] = {scope: _paired(arm, against, scope, "macro_f1",
                                                  values[arm][scope]["macro_f1"]["per_seed"],
                                                  values[against][scope]["macro_f1"]["per_seed"])
                                   for scope in SCOPES}
            records.append(record)
    return {"metric": "macro_f1", "n_resamples": f1["n_resamples"], "bootstrap_seed": f1["seed"],
            "seeds": None if seeds is None else seeds["seeds"], "comparisons": records}
