"""The experiment config: one YAML file that describes every stage of ``distillab run``.

Each section is a dataclass whose fields carry their help text, default and type; the type is
checked for every key before any range check (an integer where an integer belongs, finite numbers,
a string where a name belongs), so ``distillab validate`` catches every error ``run`` would hit and
lists them together, each with its key path. :func:`load_config` reads YAML as plain data (never
code, no aliases). Training settings and arm syntax belong to :mod:`distillab.train` and are
validated by it, not copied here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillab.errors import ConfigError, DistillabError

# The embedded default experiment and the other shipped configs live inside the package.
CONFIG_DIR = Path(__file__).parent / "configs"
ASSET_DIR = Path(__file__).parent / "assets"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

# Reference baselines a run can add beside the students (distillab.baselines builds them).
KNOWN_BASELINES = ("tfidf_linear",)
# The stages of `distillab run`, in data-flow order (what --restart accepts); here so the CLI stays light.
STAGES = ("teacher", "train", "audit", "report")

# Upper bounds that keep a typo (1e12) from exhausting memory hours into a run.
MAX_BOW_BUCKETS = 2**24  # 16.8 M rows of the n-gram table: 4 GiB at the default dim 64 in fp32
MAX_RESAMPLES = 100_000
MAX_BINS = 1_000


def _help(text: str, **kwargs: Any):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class TiersConfig:
    """How classes are split into head/mid/tail (by training-set frequency)."""

    cutoffs: list[int] | None = _help("rank cut-offs: head = ranks 1..a, mid = a+1..b, tail = the rest", default=None)
    thresholds: list[int] | None = _help("count thresholds [h, m]: head has ≥ h training rows, mid ≥ m", default=None)

    def problems(self) -> list[str]:
        found = []
        if self.cutoffs is not None and self.thresholds is not None:
            found.append("tiers: give cutoffs or thresholds, not both")
        for name in ("cutoffs", "thresholds"):
            value = getattr(self, name)
            if value is None:
                continue
            if not (len(value) == 2 and all(v > 0 for v in value)):
                found.append(f"tiers.{name}: expected two positive integers, got {value!r}")
            elif name == "cutoffs" and not value[0] < value[1]:
                found.append(f"tiers.cutoffs: {value} must increase (head ranks end before mid ranks)")
            elif name == "thresholds" and not value[0] > value[1]:
                found.append(f"tiers.thresholds: {value} must decrease (head needs more rows than mid)")
        return found


@dataclass
class TeacherConfig:
    """Where the teacher's outputs come from: an existing cache, a model to run once, or imported arrays."""

    cache: str | None = _help("an existing teacher cache folder ('builtin:NAME' = one shipped with distillab)", default=None)
    model: str | None = _help("a sequence-classification model (folder, Hub id or pypi:NAME) to run and cache",
                              default=None)
    import_npz: str | None = _help("an .npz with 'logits' (+ 'labels') to import as the cache", default=None)
    temperature: float | None = _help("post-hoc temperature applied at capture and recorded (with cache: the "
                                      "temperature the cache must record)", default=None)
    already_scaled_by: float | None = _help("import_npz only: a temperature already applied to those logits", default=None)
    splits: list[str] | None = _help("splits to cache (default: all); the evaluation split may be left out "
                                     "when eval_predictions is given", default=None)
    eval_predictions: str | None = _help("the teacher's predictions file on the evaluation split, when the cache "
                                         "does not hold it (e.g. the course's val_logits npz)", default=None)
    max_length: int = _help("tokens per text when running the model", default=128)
    batch_size: int = _help("rows per forward pass when running the model", default=32)
    dtype: str = _help("stored logits dtype: fp16, bf16 or fp32", default="fp16")
    features: list[str] | None = _help("model only: teacher features to cache beside the logits for feature "
                                       "objectives, e.g. [pooled.12] (mean-pooled hidden state of layer 12)",
                                       default=None)

    def problems(self) -> list[str]:
        given = [name for name in ("cache", "model", "import_npz") if getattr(self, name)]
        found = []
        if len(given) != 1:
            found.append(f"teacher: give exactly one of cache, model, import_npz (got {given or 'none'})")
        if self.temperature is not None and not self.temperature > 0:
            found.append(f"teacher.temperature: must be > 0, got {self.temperature!r}")
        if self.already_scaled_by is not None and not self.import_npz:
            found.append("teacher.already_scaled_by: only applies to import_npz")
        if self.already_scaled_by is not None and not self.already_scaled_by > 0:
            found.append(f"teacher.already_scaled_by: must be > 0, got {self.already_scaled_by!r}")
        if self.features is not None and not self.model:
            found.append("teacher.features: only applies to teacher.model (a given cache holds what it holds)")
        if self.dtype not in ("fp16", "bf16", "fp32"):
            found.append(f"teacher.dtype: must be fp16, bf16 or fp32, got {self.dtype!r}")
        if self.max_length < 2:
            found.append(f"teacher.max_length: must be an integer >= 2, got {self.max_length!r}")
        if self.batch_size < 1:
            found.append(f"teacher.batch_size: must be an integer >= 1, got {self.batch_size!r}")
        return found


@dataclass
class GridConfig:
    """A T×α grid of KD arms trained from the same cache (empty lists: no grid)."""

    T: list[float] = _help("distillation temperatures", default_factory=list)
    alpha: list[float] = _help("weights of the KD term", default_factory=list)

    def problems(self) -> list[str]:
        found = []
        if bool(self.T) != bool(self.alpha):
            found.append("grid: give both T and alpha lists (or neither)")
        found += [f"grid.T: {t!r} must be a number > 0" for t in self.T if not t > 0]
        found += [f"grid.alpha: {a!r} must be in [0, 1]" for a in self.alpha if not 0 <= a <= 1]
        return found


@dataclass
class QuantizeConfig:
    """int8 copies of trained students, audited as deployment candidates ``NAME-int8`` (distillab.quantize)."""

    arms: list[str] = _help("trained arms to quantize to int8 after training (each audited as NAME-int8)",
                            default_factory=list)
    backend: str = _help("auto (torchao when installed, else torch.ao), torchao or torch.ao", default="auto")

    def problems(self) -> list[str]:
        if not self.arms and self.backend == "auto":  # nothing to quantize: torch stays unimported
            return []
        from distillab.quantize.backends import BACKENDS, resolve_backend

        if self.backend not in BACKENDS:
            return [f"quantize.backend: {self.backend!r} must be one of {', '.join(BACKENDS)}"]
        if self.backend == "auto":
            return []

        try:  # a backend that is not installed is caught here, before any training
            resolve_backend(self.backend)
        except DistillabError as exc:
            return [f"quantize.backend: {exc}"]
        return []


@dataclass
class CalibrationConfig:
    """Temperature scaling: fitted on one half of the evaluation split, scored on the other."""

    seed: int = _help("seed of the permutation that splits evaluation rows into cal/eval halves", default=1041)
    optimizer: str = _help("how T is fitted: exact (float64, to the optimum) or reference (the course's torch LBFGS, "
                           "lr 0.1, max_iter 200, float32: reproduces its printed ECE and Test B)", default="exact")

    def problems(self) -> list[str]:
        found = [] if _seed(self.seed) else [f"calibration.seed: must be an integer in [0, 2**32), got {self.seed!r}"]
        if self.optimizer not in ("exact", "reference"):
            found.append(f"calibration.optimizer: must be exact or reference, got {self.optimizer!r}")
        return found


@dataclass
class AuditConfig:
    """Settings of ``distillab audit`` (see DESIGN.md for the definitions)."""

    baseline: str = _help("arm every difference is measured against", default="vanilla")
    distilled: str | None = _help("the distilled arm for Test B (default: first arm other than baseline)", default=None)
    n_resamples: int = _help("paired-bootstrap resamples", default=1000)
    seed: int = _help("seed of the bootstrap's RandomState stream", default=42)
    bins: int = _help("equal-width ECE bins", default=15)
    thresholds: list[float] = _help("confidence thresholds of the coverage table",
                                    default_factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9])
    sla: float = _help("accuracy target of the SLA threshold lookup", default=0.95)
    reference_score: float | None = _help("a baseline macro-F1 for the data-confound lift table", default=None)

    def problems(self) -> list[str]:
        found = []
        if not 10 <= self.n_resamples <= MAX_RESAMPLES:
            found.append(f"audit.n_resamples: must be an integer in [10, {MAX_RESAMPLES:,}], got {self.n_resamples!r}")
        if not _seed(self.seed):
            found.append(f"audit.seed: must be an integer in [0, 2**32), got {self.seed!r}")
        if self.distilled is not None and self.distilled == self.baseline:
            found.append(f"audit.distilled: {self.distilled!r} is the baseline; name another arm (or leave it out)")
        if not 1 <= self.bins <= MAX_BINS:
            found.append(f"audit.bins: must be an integer in [1, {MAX_BINS:,}], got {self.bins!r}")
        if not 0 < self.sla <= 1:
            found.append(f"audit.sla: must be in (0, 1], got {self.sla!r}")
        found += [f"audit.thresholds: {t!r} must be in [0, 1]" for t in self.thresholds if not 0 <= t <= 1]
        if self.reference_score is not None and not 0 <= self.reference_score <= 1:
            found.append(f"audit.reference_score: a macro-F1 must be in [0, 1], got {self.reference_score!r}")
        return found


@dataclass
class ReportConfig:
    """Options of ``distillab report``."""

    title: str | None = _help("the report's title (default: from the audit)", default=None)
    scenarios: list[dict] | None = _help("deployment scenarios (see distillab report --help; default: the "
                                         "reference experiment's three)", default=None)

    def problems(self) -> list[str]:
        if self.scenarios is None:
            return []
        from distillab.report.decision import validate_scenarios

        found = [f"report.scenarios{path}: {value!r} is not a finite number"
                 for path, value in _non_finite(self.scenarios)]
        try:
            validate_scenarios(self.scenarios, where="report.scenarios")
        except ConfigError as exc:
            found += str(exc).split("; ")
        return found


def audit_names(arms, baselines, quantized=()) -> dict[str, str]:
    """Every name a run audits besides schedule stages, with what it is (the first meaning wins on a clash):
    its arms, reference baselines, the arms' side students (``NAME-ema``, ...) and int8 copies (``NAME-int8``)."""
    taken: dict[str, str] = {}
    for arm in arms:
        taken.setdefault(arm.name, "an arm")
    for name in baselines:
        taken.setdefault(name, "a reference baseline")
    for name in quantized:
        taken.setdefault(f"{name}-int8", f"arm {name!r}'s int8 copy (quantize.arms)")
    for arm in arms:
        for side in arm.side_students():
            taken.setdefault(f"{arm.name}-{side}", f"arm {arm.name!r}'s {side} student")
    return taken


@dataclass
class ExperimentConfig:
    """One experiment: data → teacher cache → students → calibration → audit → report."""

    name: str = _help("experiment name, shown in the report", default="experiment")
    output_dir: str = _help("where every stage writes (relative paths: to the current directory)", default="runs/experiment")
    data: dict = _help("dataset spec for distillab.data.load_dataset (lab / hub / path + options)", default_factory=dict)
    eval_split: str = _help("split the students are evaluated and audited on", default="test")
    tiers: TiersConfig = _help("head/mid/tail definition", default_factory=TiersConfig)
    teacher: TeacherConfig = _help("teacher outputs", default_factory=TeacherConfig)
    training: dict = _help("distillab.train.TrainConfig settings shared by every arm, plus the run's seeds and "
                           "seed_arms (see SEED_SETTINGS)", default_factory=dict)
    arms: list[str | dict] = _help("arms in `distillab train --arm` syntax, e.g. 'kd:T=4,alpha=0.7,name=kd', or "
                                   "{name, objectives: [{kd: {T: 4}}, {hidden_mse: {weight: 1}}]}",
                            default_factory=lambda: ["vanilla", "kd:name=kd"])
    grid: GridConfig = _help("optional T×α grid", default_factory=GridConfig)
    born_again: list[dict] = _help("born-again schedules, e.g. {name: ban, arm: 'kd:T=2,alpha=0.7', generations: 3}: "
                                   "generation g+1 distils from generation g, each audited as NAME-gG "
                                   "(with training.seeds: for every seed; see distillab.schedules)",
                                   default_factory=list)
    chains: list[dict] = _help("teacher-assistant chains: {name, compare_with: ARM, stages: [{name, arm, training}, "
                               "...]}: stage k+1 distils from stage k, the last (the student) is compared with "
                               "compare_with, each audited as NAME-STAGE (with training.seeds: for every seed; "
                               "see distillab.schedules)",
                               default_factory=list)
    quantize: QuantizeConfig = _help("int8 copies of trained arms, audited beside them as NAME-int8",
                                     default_factory=QuantizeConfig)
    baselines: list[str] = _help(f"reference baselines trained beside the students ({', '.join(KNOWN_BASELINES)})",
                                 default_factory=list)
    calibration: CalibrationConfig = _help("post-hoc temperature scaling", default_factory=CalibrationConfig)
    audit: AuditConfig = _help("audit settings", default_factory=AuditConfig)
    report: ReportConfig = _help("report options", default_factory=ReportConfig)
    source: str | None = _help("the file this config was read from (set by load_config)", default=None)

    def problems(self) -> list[str]:
        """Every range and consistency problem, as one message each (types are checked when building)."""
        found: list[str] = []
        if not self.output_dir.strip():
            found.append("output_dir: must name a folder, got an empty string")
        found += _data_problems(self.data)
        for section in (self.tiers, self.teacher, self.grid, self.quantize, self.calibration, self.audit, self.report):
            found += section.problems()
        found += [f"baselines: unknown baseline {name!r}; known: {', '.join(KNOWN_BASELINES)}"
                  for name in self.baselines if name not in KNOWN_BASELINES]
        found += [f"baselines: {name!r} is listed twice" for name in sorted(set(self.baselines))
                  if self.baselines.count(name) > 1]
        training = self._training_problems()
        found += training + self._arm_problems()
        found += self._schedule_problems(training_valid=not training)
        return found

    def _training_problems(self) -> list[str]:
        from distillab.train.config import TrainConfig

        names = {f.name: f for f in dataclasses.fields(TrainConfig)}
        hints = typing.get_type_hints(TrainConfig) | {key: hint for key, (hint, _) in SEED_SETTINGS.items()}
        unknown = set(self.training) - set(names) - set(SEED_SETTINGS)
        found = [f"training: unknown setting(s) {sorted(unknown)}; "
                 f"valid: {', '.join(sorted([*names, *SEED_SETTINGS]))}"] if unknown else []
        typed = {f.name: f.default for f in names.values()} | dict.fromkeys(SEED_SETTINGS)
        for key, value in self.training.items():
            if key in hints and not _type_ok(value, hints[key]):
                found.append(f"training.{key}: {_expected(hints[key])}, got {_shown(value)}")
            elif key in typed:
                typed[key] = value
        if not _seed(typed["seed"]):
            found.append(f"training.seed: must be an integer in [0, 2**32), got {typed['seed']!r}")
        found += _seeds_problems(typed["seeds"], self.training.get("seed"), typed["seed_arms"])
        if typed["bow_buckets"] > MAX_BOW_BUCKETS:
            found.append(f"training.bow_buckets: at most {MAX_BOW_BUCKETS:,} (2**24), got {typed['bow_buckets']:,}")
        if found:  # TrainConfig's own range checks assume the right types
            return found
        try:
            train_split = self.train_config().validate().train_split
        except ConfigError as exc:
            return found + [f"training: {line.strip()}" for line in str(exc).splitlines()[1:] or [str(exc)]]
        if train_split == self.eval_split:
            found.append(f"eval_split: {self.eval_split!r} is also the training split")
        return found

    def _arm_problems(self) -> list[str]:
        from distillab.train.arms import arm_from_config

        found, parsed = [], []
        for text in self.arms:
            try:
                parsed.append(arm_from_config(text))
            except DistillabError as exc:
                found.append(f"arms: {exc}")
        names = [arm.name for arm in parsed + self._grid_arms(parsed)]
        found += [f"arms: the name {name!r} is used twice" for name in sorted({n for n in names if names.count(n) > 1})]
        found += [f"arms: arm {arm.name!r}'s {side} student is audited as {arm.name + '-' + side!r}, the name of another "
                  "arm; rename one" for arm in parsed for side in arm.side_students() if f"{arm.name}-{side}" in names]
        found += [f"baselines: {name!r} is also the name of an arm; rename the arm" for name in self.baselines
                  if name in names]
        # A reference baseline may be the paired comparison's baseline, but only when the config says so here.
        if self.audit.baseline not in names + list(self.baselines):
            found.append(f"audit.baseline: {self.audit.baseline!r} is not an arm (arms: {', '.join(names)})")
        if self.audit.distilled is not None and self.audit.distilled not in names:
            found.append(f"audit.distilled: {self.audit.distilled!r} is not an arm (arms: {', '.join(names)})")
        found += self._seed_arms_problems(names)
        found += self._quantize_problems(parsed + self._grid_arms(parsed))
        return found

    def _quantize_problems(self, arms: list) -> list[str]:
        """``quantize.arms`` names trained arms, each once, whose ``NAME-int8`` is a new audit name."""
        names = [arm.name for arm in arms]
        taken = audit_names(arms, self.baselines)
        found = []
        for name in dict.fromkeys(self.quantize.arms):
            if self.quantize.arms.count(name) > 1:
                found.append(f"quantize.arms: {name!r} is listed twice")
            if name not in names:
                found.append(f"quantize.arms: {name!r} is not an arm (arms: {', '.join(names)})")
            elif f"{name}-int8" in taken:
                found.append(f"quantize.arms: {name!r} would be audited as {name + '-int8'!r}, already an arm or "
                             "baseline; rename that arm")
        return found

    def _seed_arms_problems(self, names: list[str]) -> list[str]:
        """``training.seed_arms`` names trained arms, each once, including a trained audit baseline."""
        chosen = self.training.get("seed_arms")
        if not (isinstance(chosen, list) and chosen and all(isinstance(n, str) for n in chosen)):
            return []  # absent, or a type problem already reported
        found = []
        for name in dict.fromkeys(chosen):
            if name in self.baselines:
                found.append(f"training.seed_arms: {name!r} is a reference baseline: deterministic, never "
                             "retrained per seed; list trained arms only")
            elif name not in names:
                found.append(f"training.seed_arms: {name!r} is not an arm (arms: {', '.join(names)})")
        if self.audit.baseline in names and self.audit.baseline not in chosen:
            found.append(f"training.seed_arms: must include the audit baseline {self.audit.baseline!r} (every "
                         "seed's arms are compared with the baseline trained with the same seed)")
        return found

    def _schedule_problems(self, training_valid: bool) -> list[str]:
        from distillab.schedules import parse_schedules

        return parse_schedules(self, training_valid)[1]

    def schedules(self) -> list:
        """The born-again and chain schedules (:class:`distillab.schedules.Schedule`), in config order."""
        from distillab.schedules import parse_schedules

        return parse_schedules(self)[0]

    def seeds(self) -> list[int]:
        """The training seeds: ``training.seeds``, else ``[training.seed]``; the first is the primary seed."""
        if self.training.get("seeds"):
            return list(self.training["seeds"])
        from distillab.train.config import TrainConfig

        return [self.training.get("seed", TrainConfig.seed)]

    def seed_arm_names(self) -> list[str]:
        """The arms trained again with every seed after the first (``training.seed_arms``; default: all)."""
        chosen = self.training.get("seed_arms")
        names = [arm.name for arm in self.parsed_arms()]
        return [name for name in names if chosen is None or name in chosen]

    def train_config(self):
        from distillab.train.config import TrainConfig

        from distillab.pypi_models import resolve_model_ref

        settings = {"eval_splits": [self.eval_split], **self.training}
        for key in SEED_SETTINGS:  # the run's, not one student's: the trainer gets the primary seed
            settings.pop(key, None)
        if self.training.get("seeds"):
            settings["seed"] = self.training["seeds"][0]
        if isinstance(settings.get("student"), str):
            settings["student"] = resolve_model_ref(settings["student"])
        return TrainConfig.from_dict(settings)

    def parsed_arms(self) -> list:
        """The configured arms, then the grid's KD arms, parsed by :mod:`distillab.train.arms`."""
        from distillab.train.arms import arm_from_config

        arms = [arm_from_config(spec) for spec in self.arms]
        return arms + self._grid_arms(arms)

    def _grid_arms(self, arms: list) -> list:
        from distillab.train.arms import parse_arm

        # A grid point that an explicit arm already trains (e.g. kd at T=4, α=0.7) is not trained twice.
        kd = [arm.only("kd") for arm in arms]
        trained = {(o.values["T"], o.values["alpha"]) for o in kd if o is not None}
        grid = []
        for t in self.grid.T:
            for a in self.grid.alpha:
                if t > 0 and 0 <= a <= 1 and (float(t), float(a)) not in trained:
                    grid.append(parse_arm(f"kd:T={t:g},alpha={a:g}"))
        return grid

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser()


# --------------------------------------------------------------------------- training seeds

# Settings under `training:` that belong to the run, not to one student (TrainConfig does not hold
# them): name → (type, help).
SEED_SETTINGS = {
    "seeds": (list[int] | None,
              "train every arm with each of these seeds (distinct integers in [0, 2**32)); the first is the primary "
              "seed, whose arms are the run's arms (arms/NAME, audit.json); each other seed S trains again into "
              "arms-seedS/NAME and audit/seeds.json gives the seed-to-seed variance. Replaces training.seed, "
              "which may then be left out or must equal the first seed"),
    "seed_arms": (list[str] | None,
                  "the arms trained again with the seeds after the first (default: every arm); must include the "
                  "audit baseline when it is a trained arm"),
}


def _seeds_problems(seeds: Any, seed: Any, seed_arms: Any) -> list[str]:
    """``training.seeds`` (types already checked): non-empty, distinct, in range, agreeing with ``training.seed``."""
    found = []
    if seeds is not None and _type_ok(seeds, list[int]):
        if not seeds:
            found.append("training.seeds: must list at least one seed (or leave it out and give training.seed)")
        found += [f"training.seeds: {s!r} is not an integer in [0, 2**32)" for s in seeds if not _seed(s)]
        found += [f"training.seeds: {s!r} is listed twice; seeds must be distinct" for s in sorted(set(seeds))
                  if seeds.count(s) > 1]
        if seeds and seed is not None and seed != seeds[0]:
            found.append(f"training.seed: {seed!r} disagrees with training.seeds, whose first seed ({seeds[0]!r}) is "
                         "the primary seed; leave training.seed out or make it equal")
    if seed_arms is not None and _type_ok(seed_arms, list[str]):
        if seeds is None:
            found.append("training.seed_arms: only applies with training.seeds (give two or more seeds)")
        if not seed_arms:
            found.append("training.seed_arms: must name at least one arm (leave it out for every arm)")
        found += [f"training.seed_arms: {name!r} is listed twice" for name in sorted(set(seed_arms))
                  if seed_arms.count(name) > 1]
    return found


# --------------------------------------------------------------------------- the data spec

# Dataset-spec keys whose value is a single name or path (see distillab.data.load).
_DATA_STRINGS = ("lab", "hub", "path", "data_dir", "config", "revision", "name", "id_prefix", "text_column",
                 "label_column", "id_column", "class_split", "unknown_labels", "empty_text")


def _data_problems(spec: dict) -> list[str]:
    """The checks on a dataset spec that need no file: keys, types, exactly one source."""
    from distillab.data.lab import LAB_DATASETS
    from distillab.data.load import SOURCE_KEYS, SPEC_KEYS

    if not spec:
        return ["data: give a dataset spec, e.g. {lab: r52}"]
    found = []
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        found.append(f"data: unknown key(s) {unknown}; valid: {', '.join(sorted(SPEC_KEYS))}")
    for key in _DATA_STRINGS:
        if key in spec and spec[key] is not None and not isinstance(spec[key], str):
            found.append(f"data.{key}: must be a string, got {_shown(spec[key])}")
    sources = [key for key in SOURCE_KEYS if spec.get(key)]
    if len(sources) != 1:
        found.append(f"data: give exactly one of {', '.join(SOURCE_KEYS)} (got {', '.join(sources) or 'none'})")
    if isinstance(spec.get("lab"), str) and spec["lab"] not in LAB_DATASETS:
        found.append(f"data.lab: unknown lab dataset {spec['lab']!r}; known: {', '.join(LAB_DATASETS)}")
    for key in ("unknown_labels", "empty_text"):
        if isinstance(spec.get(key), str) and spec[key] not in ("error", "drop"):
            found.append(f"data.{key}: must be error or drop, got {spec[key]!r}")
    count = spec.get("min_class_count")
    if count is not None and not (_type_ok(count, int) and count >= 1):
        found.append(f"data.min_class_count: must be an integer >= 1, got {_shown(count)}")
    return found


# --------------------------------------------------------------------------- types


def _seed(value: Any) -> bool:
    """A seed numpy's RandomState accepts (bool is an int in Python, but never a meant seed)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's annotation; floats must be finite, bool is never a number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if origin in (list, tuple):
        if origin is tuple and isinstance(value, str):  # TrainConfig.from_dict takes one split name as a string
            return True
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    return True


def _expected(hint: Any) -> str:
    """What a field's annotation asks for, in words ("must be an integer or null")."""
    return f"must be {_noun(hint)}"


def _noun(hint: Any, plural: bool = False) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        words = [_noun(arg) for arg in args if arg is not type(None)]
        return " or ".join(words) + (" or null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"a list of {_noun(args[0], plural=True)}"
    singular, many = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
                      float: ("a finite number", "finite numbers"), str: ("a string", "strings")
                      }.get(hint, ("a mapping", "mappings"))
    return many if plural else singular


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({type(value).__name__})"


def _non_finite(value: Any, path: str = ""):
    """(key path, value) of every NaN or infinite number inside nested lists and mappings."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, f"{path}[{i}]")


# --------------------------------------------------------------------------- building


def _build(cls, values: Any, where: str, problems: list[str]):
    """A section from a mapping: unknown keys and wrongly typed values are recorded; those fields keep their default."""
    if values is None and where:
        return cls()
    if not isinstance(values, dict):
        problems.append(f"{where or 'the config'}: expected a mapping, got {type(values).__name__}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields), key=str)
    if unknown:
        what = f"{where}: unknown key(s)" if where else "unknown section(s)"
        problems.append(f"{what} {unknown}; valid: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        if name not in fields:
            continue
        at = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = _build(hints[name], value, at, problems)
        elif _type_ok(value, hints[name]):
            kwargs[name] = value
        else:
            problems.append(f"{at}: {_expected(hints[name])}, got {_shown(value)}")
    return cls(**kwargs)


def config_from_dict(values: dict, source: str | None = None) -> ExperimentConfig:
    """Build and validate a config; raise :class:`ConfigError` listing every problem at once."""
    where = source or "config"
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections")
    problems: list[str] = []
    config = _build(ExperimentConfig, values, "", problems)
    config.source = source
    problems += config.problems()
    if problems:
        raise ConfigError(f"{where}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return config


def load_config(path: str | os.PathLike | None = None) -> ExperimentConfig:
    """Read a YAML config (the embedded default when ``path`` is None); relative paths inside it stay as written."""
    from distillab.io import load_yaml

    path = Path(path) if path is not None else DEFAULT_CONFIG
    return config_from_dict(load_yaml(path, ConfigError) or {}, source=str(path))


def resolve_builtin(value: str) -> Path:
    """``builtin:NAME`` → the asset shipped inside the package; anything else is a path."""
    if value.startswith("builtin:"):
        return ASSET_DIR / value.removeprefix("builtin:")
    return Path(value).expanduser()
