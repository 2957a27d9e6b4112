"""The experiment config: one YAML file that describes every stage of ``distillab run``.

Each section is a dataclass whose fields carry their help text and default; :func:`load_config`
reads YAML with ``yaml.safe_load`` (never executes code), and :meth:`ExperimentConfig.problems`
collects *every* problem at once so ``distillab validate`` can list them together. Training
settings and arm syntax belong to :mod:`distillab.train` and are validated by it, not copied here.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distillab.errors import ConfigError, DistillabError

# The embedded default experiment and the other shipped configs live inside the package.
CONFIG_DIR = Path(__file__).parent / "configs"
ASSET_DIR = Path(__file__).parent / "assets"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


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
            if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
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
    temperature: float | None = _help("post-hoc temperature applied at capture and recorded", default=None)
    already_scaled_by: float | None = _help("import_npz only: a temperature already applied to those logits", default=None)
    splits: list[str] | None = _help("splits to cache (default: all); the evaluation split may be left out "
                                     "when eval_predictions is given", default=None)
    eval_predictions: str | None = _help("the teacher's predictions file on the evaluation split, when the cache "
                                         "does not hold it (e.g. the course's val_logits npz)", default=None)
    max_length: int = _help("tokens per text when running the model", default=128)
    batch_size: int = _help("rows per forward pass when running the model", default=32)
    dtype: str = _help("stored logits dtype: fp16, bf16 or fp32", default="fp16")

    def problems(self) -> list[str]:
        given = [name for name in ("cache", "model", "import_npz") if getattr(self, name)]
        found = []
        if len(given) != 1:
            found.append(f"teacher: give exactly one of cache, model, import_npz (got {given or 'none'})")
        if self.temperature is not None and not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            found.append(f"teacher.temperature: must be > 0, got {self.temperature!r}")
        if self.already_scaled_by is not None and not self.import_npz:
            found.append("teacher.already_scaled_by: only applies to import_npz")
        if self.already_scaled_by is not None and not _positive(self.already_scaled_by):
            found.append(f"teacher.already_scaled_by: must be > 0, got {self.already_scaled_by!r}")
        if self.dtype not in ("fp16", "bf16", "fp32"):
            found.append(f"teacher.dtype: must be fp16, bf16 or fp32, got {self.dtype!r}")
        if not (isinstance(self.max_length, int) and self.max_length >= 2):
            found.append(f"teacher.max_length: must be an integer >= 2, got {self.max_length!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
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
        found += [f"grid.T: {t!r} must be a number > 0" for t in self.T if not _positive(t)]
        found += [f"grid.alpha: {a!r} must be in [0, 1]" for a in self.alpha
                  if not (isinstance(a, (int, float)) and 0 <= a <= 1)]
        return found


@dataclass
class CalibrationConfig:
    """Temperature scaling: fitted on one half of the evaluation split, scored on the other."""

    seed: int = _help("seed of the permutation that splits evaluation rows into cal/eval halves", default=1041)

    def problems(self) -> list[str]:
        return [] if _seed(self.seed) else [f"calibration.seed: must be an integer in [0, 2**32), got {self.seed!r}"]


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
        if not (isinstance(self.n_resamples, int) and self.n_resamples >= 10):
            found.append(f"audit.n_resamples: must be an integer >= 10, got {self.n_resamples!r}")
        if not _seed(self.seed):
            found.append(f"audit.seed: must be an integer in [0, 2**32), got {self.seed!r}")
        if self.distilled is not None and self.distilled == self.baseline:
            found.append(f"audit.distilled: {self.distilled!r} is the baseline; name another arm (or leave it out)")
        if not (isinstance(self.bins, int) and self.bins >= 1):
            found.append(f"audit.bins: must be an integer >= 1, got {self.bins!r}")
        if not (isinstance(self.sla, (int, float)) and 0 < self.sla <= 1):
            found.append(f"audit.sla: must be in (0, 1], got {self.sla!r}")
        found += [f"audit.thresholds: {t!r} must be in [0, 1]" for t in self.thresholds
                  if not (isinstance(t, (int, float)) and 0 <= t <= 1)]
        return found


@dataclass
class ExperimentConfig:
    """One experiment: data → teacher cache → students → calibration → audit → report."""

    name: str = _help("experiment name, shown in the report", default="experiment")
    output_dir: str = _help("where every stage writes (relative paths: to the current directory)", default="runs/experiment")
    data: dict = _help("dataset spec for distillab.data.load_dataset (lab / hub / path + options)", default_factory=dict)
    eval_split: str = _help("split the students are evaluated and audited on", default="test")
    tiers: TiersConfig = _help("head/mid/tail definition", default_factory=TiersConfig)
    teacher: TeacherConfig = _help("teacher outputs", default_factory=TeacherConfig)
    training: dict = _help("distillab.train.TrainConfig settings shared by every arm", default_factory=dict)
    arms: list[str] = _help("arms in `distillab train --arm` syntax, e.g. 'kd:T=4,alpha=0.7,name=kd'",
                            default_factory=lambda: ["vanilla", "kd:name=kd"])
    grid: GridConfig = _help("optional T×α grid", default_factory=GridConfig)
    calibration: CalibrationConfig = _help("post-hoc temperature scaling", default_factory=CalibrationConfig)
    audit: AuditConfig = _help("audit settings", default_factory=AuditConfig)
    report: dict = _help("report options: title, scenarios (see distillab report --help)", default_factory=dict)
    source: str | None = _help("the file this config was read from (set by load_config)", default=None)

    def problems(self) -> list[str]:
        """Every problem in the config, as one message each (empty when valid)."""
        found: list[str] = []
        if not self.data:
            found.append("data: give a dataset spec, e.g. {lab: r52}")
        else:
            from distillab.data.load import SPEC_KEYS

            unknown = sorted(set(self.data) - SPEC_KEYS)
            if unknown:
                found.append(f"data: unknown key(s) {unknown}; valid: {', '.join(sorted(SPEC_KEYS))}")
        for section in (self.tiers, self.teacher, self.grid, self.calibration, self.audit):
            found += section.problems()
        found += self._training_problems()
        found += self._arm_problems()
        return found

    def _training_problems(self) -> list[str]:
        from distillab.train.config import TrainConfig

        try:
            self.train_config().validate()
        except ConfigError as exc:
            return [f"training: {line.strip()}" for line in str(exc).splitlines()[1:] or [str(exc)]]
        except TypeError as exc:
            return [f"training: {exc}"]
        if TrainConfig.from_dict(self.training).train_split == self.eval_split:
            return [f"eval_split: {self.eval_split!r} is also the training split"]
        return []

    def _arm_problems(self) -> list[str]:
        from distillab.train.arms import parse_arm

        found, parsed = [], []
        for text in self.arms:
            try:
                parsed.append(parse_arm(text))
            except DistillabError as exc:
                found.append(f"arms: {exc}")
        names = [arm.name for arm in parsed + self._grid_arms(parsed)]
        found += [f"arms: the name {name!r} is used twice" for name in sorted({n for n in names if names.count(n) > 1})]
        if self.audit.baseline not in names:
            found.append(f"audit.baseline: {self.audit.baseline!r} is not an arm (arms: {', '.join(names)})")
        if self.audit.distilled is not None and self.audit.distilled not in names:
            found.append(f"audit.distilled: {self.audit.distilled!r} is not an arm (arms: {', '.join(names)})")
        return found

    def train_config(self):
        from distillab.train.config import TrainConfig

        from distillab.pypi_models import resolve_model_ref

        settings = {"eval_splits": [self.eval_split], **self.training}
        if isinstance(settings.get("student"), str):
            settings["student"] = resolve_model_ref(settings["student"])
        return TrainConfig.from_dict(settings)

    def parsed_arms(self) -> list:
        """The configured arms, then the grid's KD arms, parsed by :mod:`distillab.train.arms`."""
        from distillab.train.arms import parse_arm

        arms = [parse_arm(text) for text in self.arms]
        return arms + self._grid_arms(arms)

    def _grid_arms(self, arms: list) -> list:
        from distillab.train.arms import parse_arm

        # A grid point that an explicit arm already trains (e.g. kd at T=4, α=0.7) is not trained twice.
        trained = {(arm.T, arm.alpha) for arm in arms if arm.loss == "kd"}
        grid = []
        for t in self.grid.T:
            for a in self.grid.alpha:
                if _positive(t) and isinstance(a, (int, float)) and 0 <= a <= 1 and (float(t), float(a)) not in trained:
                    grid.append(parse_arm(f"kd:T={t:g},alpha={a:g}"))
        return grid

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser()


def _seed(value: Any) -> bool:
    """A seed numpy's RandomState accepts (bool is an int in Python, but never a meant seed)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _build(cls, values: Any, where: str, problems: list[str]):
    """Instantiate a section dataclass from a mapping, recording unknown keys and wrong shapes."""
    if values is None:
        return cls()
    if not isinstance(values, dict):
        problems.append(f"{where}: expected a mapping, got {type(values).__name__}")
        return cls()
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        problems.append(f"{where}: unknown key(s) {unknown}; valid: {', '.join(sorted(names))}")
    return cls(**{k: v for k, v in values.items() if k in names})


SECTIONS = {"tiers": TiersConfig, "teacher": TeacherConfig, "grid": GridConfig,
            "calibration": CalibrationConfig, "audit": AuditConfig}


def config_from_dict(values: dict, source: str | None = None) -> ExperimentConfig:
    """Build and validate a config; raise :class:`ConfigError` listing every problem at once."""
    where = source or "config"
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections")
    problems: list[str] = []
    top = {f.name for f in dataclasses.fields(ExperimentConfig)} - {"source"}
    unknown = sorted(set(values) - top)
    if unknown:
        problems.append(f"unknown section(s) {unknown}; valid: {', '.join(sorted(top))}")
    kwargs = {k: v for k, v in values.items() if k in top and k not in SECTIONS}
    for key in ("data", "training", "report"):
        if key in kwargs and not isinstance(kwargs[key], dict):
            problems.append(f"{key}: expected a mapping, got {type(kwargs[key]).__name__}")
            kwargs.pop(key)
    if "arms" in kwargs and not (isinstance(kwargs["arms"], list) and all(isinstance(a, str) for a in kwargs["arms"])):
        problems.append("arms: expected a list of strings like 'kd:T=4,alpha=0.7'")
        kwargs.pop("arms")
    for key, cls in SECTIONS.items():
        kwargs[key] = _build(cls, values.get(key), key, problems)
    config = ExperimentConfig(**kwargs, source=source)
    problems += config.problems()
    if problems:
        raise ConfigError(f"{where}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return config


def load_config(path: str | os.PathLike | None = None) -> ExperimentConfig:
    """Read a YAML config (the embedded default when ``path`` is None); relative paths inside it stay as written."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return config_from_dict(values or {}, source=str(path))


def resolve_builtin(value: str) -> Path:
    """``builtin:NAME`` → the asset shipped inside the package; anything else is a path."""
    if value.startswith("builtin:"):
        return ASSET_DIR / value.removeprefix("builtin:")
    return Path(value).expanduser()
