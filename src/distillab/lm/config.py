"""The language-model experiment config (``kind: lm``): its schema, defaults and every problem at once.

::

    kind: lm
    name: str                 output_dir: runs/NAME
    data: {lab: r52}          (any dataset spec of distillab.data.load_dataset)
    train_split: train        eval_split: test        (the eval split is held out: audit only)
    max_train_docs: int|null  max_eval_docs: int|null  (a seeded subset: the CPU token budget)
    max_length: 64            append_eos: true        (tokens per document, EOS included)
    teacher: {model: pypi:SmolLM2-135M-Instruct, gguf_file: null, topk: 20, sampled: 32, seed: 0,
              batch_size: 8, topk_cache: null, sampled_cache: null}
        (*_cache: reuse an existing per-token cache of exactly these documents and tokens, e.g. an earlier
        LM run's OUT/teacher-topk; `distillab teacher --causal-lm` tokenises the texts as they are, so
        its caches fit a config with append_eos: false. Anything else is refused, naming the row.)
    student: {layers: 6}  or  {layers: [0, 9, 19, 29]}  or  {model: PATH}   (an HF causal LM, same tokenizer)
    training: {steps: 60, batch_size: 8, learning_rate: 3.0e-4, warmup: 0.1, seed: 0, chunk_rows: 256,
               threads: null}   (torch threads for the whole run; 1 beats 2 on a shared, oversubscribed CPU)
    arms: [{name, loss, ...settings}]    losses and their settings: see ``LOSSES``
    audit: {baseline: ce, n_resamples: 1000, bins: 15, seed: 0}
    report: {title: str}
"""

from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from distillab.errors import ConfigError

# loss → its settings and their defaults (None: required to be absent/optional)
LOSSES = {
    "ce": {},
    "topk_kd": {"T": 1.0, "alpha": 0.5, "tail": "renormalize"},
    "sampled_kd": {"alpha": 0.5},
    "topk_reverse_kl": {"T": 1.0, "alpha": 0.5},
    "topk_jsd": {"T": 1.0, "alpha": 0.5, "beta": 0.5},
    "seq_kd": {"prompt_tokens": 16, "new_tokens": 32, "do_sample": False, "temperature": 1.0, "seed": 0},
    "gkd": {"prompt_tokens": 16, "new_tokens": 24, "beta": 0.5, "T": 1.0, "on_policy": 0.5,
            "temperature": 1.0, "seed": 0},
}
TOP = {"kind", "name", "output_dir", "data", "train_split", "eval_split", "max_train_docs", "max_eval_docs",
       "max_length", "append_eos", "teacher", "student", "training", "arms", "audit", "report"}
SECTIONS = {
    "teacher": {"model": "pypi:SmolLM2-135M-Instruct", "gguf_file": None, "topk": 20, "sampled": 32, "seed": 0,
                "batch_size": 8, "topk_cache": None, "sampled_cache": None},
    "student": {"layers": 6, "model": None},
    "training": {"steps": 60, "batch_size": 8, "learning_rate": 3.0e-4, "warmup": 0.1, "seed": 0, "chunk_rows": 256,
                 "threads": None},
    "audit": {"baseline": "ce", "n_resamples": 1000, "bins": 15, "seed": 0},
    "report": {"title": None},
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # fullmatch: a folder name, never '.', '..' or ending in '\n'
MAX_RESAMPLES, MAX_BINS = 100_000, 1_000  # as the classification audit's bounds (distillab.config)


@dataclass
class Arm:
    """One student to train: a name, a loss and that loss's settings (defaults filled in)."""

    name: str
    loss: str
    settings: dict

    def record(self) -> dict:
        return {"name": self.name, "loss": self.loss, **self.settings}


@dataclass
class LMConfig:
    source: str
    name: str
    output_dir: str
    data: dict
    train_split: str
    eval_split: str
    max_train_docs: int | None
    max_eval_docs: int | None
    max_length: int
    append_eos: bool
    teacher: dict
    student: dict
    training: dict
    arms: list[Arm]
    audit: dict
    report: dict
    raw: dict = field(repr=False, default_factory=dict)

    def output_path(self) -> Path:
        return Path(self.output_dir).expanduser()

    def needs(self, loss: str) -> bool:
        return any(arm.loss == loss for arm in self.arms)

    def needs_topk(self) -> bool:
        return any(arm.loss in ("topk_kd", "topk_reverse_kl", "topk_jsd") for arm in self.arms)


def is_lm_config(raw) -> bool:
    return isinstance(raw, dict) and raw.get("kind") == "lm"


def load_lm_config(path: str | os.PathLike) -> LMConfig:
    from distillab.io import load_yaml

    return lm_config_from_dict(load_yaml(Path(path), ConfigError) or {}, source=str(path))


def lm_config_from_dict(raw: dict, source: str = "<dict>") -> LMConfig:
    """Validate ``raw`` and fill defaults; a :class:`ConfigError` lists every problem, prefixed by ``source``."""
    problems: list[str] = []
    raw = copy.deepcopy(raw)
    if not is_lm_config(raw):
        raise ConfigError(f"{source}: an LM config needs top-level 'kind: lm'")
    for key in sorted(set(raw) - TOP):
        problems.append(f"unknown key {key!r} (known: {', '.join(sorted(TOP))})")
    sections = {}
    for section, defaults in SECTIONS.items():
        given = {} if raw.get(section) is None else raw[section]
        if not isinstance(given, dict):
            problems.append(f"{section}: must be a mapping")
            given = {}
        problems += [f"{section}: unknown key {k!r} (known: {', '.join(defaults)})" for k in sorted(set(given) - set(defaults))]
        sections[section] = {**defaults, **{k: v for k, v in given.items() if k in defaults}}
    if not isinstance(raw.get("data"), dict):
        problems.append("data: a dataset spec mapping is required (e.g. {lab: r52})")
    _positive(problems, "max_length", raw.get("max_length", 64))
    for key in ("max_train_docs", "max_eval_docs"):
        if raw.get(key) is not None:
            _positive(problems, key, raw[key])
    for key in ("name", "output_dir", "train_split", "eval_split"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            problems.append(f"{key}: must be a string, got {raw[key]!r}")
    if not isinstance(raw.get("append_eos", True), bool):
        problems.append(f"append_eos: must be true or false, got {raw['append_eos']!r}")
    _check_sections(problems, sections)
    arms = _arms(problems, raw.get("arms"), sections["teacher"])
    names = [arm.name for arm in arms]
    if arms and isinstance(sections["audit"]["baseline"], str) and sections["audit"]["baseline"] not in names:
        problems.append(f"audit.baseline: {sections['audit']['baseline']!r} is not an arm ({', '.join(names)})")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    name = str(raw.get("name") or Path(source).stem)
    return LMConfig(
        source=source, name=name, output_dir=str(raw.get("output_dir") or f"runs/{Path(source).stem}"),
        data=raw["data"], train_split=str(raw.get("train_split", "train")), eval_split=str(raw.get("eval_split", "test")),
        max_train_docs=raw.get("max_train_docs"), max_eval_docs=raw.get("max_eval_docs"),
        max_length=int(raw.get("max_length", 64)), append_eos=bool(raw.get("append_eos", True)),
        teacher=sections["teacher"], student=sections["student"], training=sections["training"], arms=arms,
        audit=sections["audit"], report={**sections["report"], "title": sections["report"]["title"] or name}, raw=raw)


def _positive(problems, where, value, integer=True) -> None:
    ok = (isinstance(value, int) if integer else isinstance(value, (int, float))) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        problems.append(f"{where}: must be a positive {'integer' if integer else 'number'}, got {value!r}")


def _check_sections(problems, sections) -> None:
    teacher, student, training = sections["teacher"], sections["student"], sections["training"]
    for key in ("topk", "sampled", "batch_size"):
        _positive(problems, f"teacher.{key}", teacher[key])
    for key in ("steps", "batch_size", "chunk_rows"):
        _positive(problems, f"training.{key}", training[key])
    if training["threads"] is not None:
        _positive(problems, "training.threads", training["threads"])
    _positive(problems, "training.learning_rate", training["learning_rate"], integer=False)
    for where, value in (("training.seed", training["seed"]), ("teacher.seed", teacher["seed"]),
                         ("audit.seed", sections["audit"]["seed"])):
        _seed(problems, where, value)
    if not isinstance(teacher["model"], str):
        problems.append(f"teacher.model: must be a path, Hub id or pypi:NAME, got {teacher['model']!r}")
    for key in ("gguf_file", "topk_cache", "sampled_cache"):
        if teacher[key] is not None and not isinstance(teacher[key], str):
            problems.append(f"teacher.{key}: must be a path or null, got {teacher[key]!r}")
    if not isinstance(sections["audit"]["baseline"], str):
        problems.append(f"audit.baseline: must be an arm name, got {sections['audit']['baseline']!r}")
    if sections["report"]["title"] is not None and not isinstance(sections["report"]["title"], str):
        problems.append(f"report.title: must be a string or null, got {sections['report']['title']!r}")
    if not isinstance(training["warmup"], (int, float)) or not 0 <= training["warmup"] < 1:
        problems.append(f"training.warmup: must be a fraction of the steps in [0, 1), got {training['warmup']!r}")
    layers, model = student["layers"], student["model"]
    if model is not None:
        if not isinstance(model, str):
            problems.append(f"student.model: must be a path or Hub id, got {model!r}")
    elif isinstance(layers, int) and not isinstance(layers, bool):
        _positive(problems, "student.layers", layers)
    elif not (isinstance(layers, list) and layers
              and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers)):
        problems.append(f"student.layers: a number of layers or a list of teacher layer indices, got {layers!r}")
    for key, most in (("n_resamples", MAX_RESAMPLES), ("bins", MAX_BINS)):
        _positive(problems, f"audit.{key}", sections["audit"][key])
        if isinstance(sections["audit"][key], int) and sections["audit"][key] > most:
            problems.append(f"audit.{key}: at most {most:,}, got {sections['audit'][key]!r}")


def _seed(problems, where, value) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32):
        problems.append(f"{where}: must be an integer in [0, 2**32), got {value!r}")


def _arms(problems, raw_arms, teacher) -> list[Arm]:
    if not isinstance(raw_arms, list) or not raw_arms:
        problems.append("arms: a non-empty list of {name, loss, ...settings} is required")
        return []
    arms = []
    for index, entry in enumerate(raw_arms):
        where = f"arms[{index}]"
        if not isinstance(entry, dict) or entry.get("loss") not in LOSSES:
            problems.append(f"{where}: needs 'loss' one of {', '.join(LOSSES)}")
            continue
        loss, name = entry["loss"], entry.get("name", entry["loss"])
        defaults = LOSSES[loss]
        extra = sorted(set(entry) - {"name", "loss"} - set(defaults))
        if extra:
            problems.append(f"{where} ({name}): unknown setting(s) {', '.join(extra)} for loss {loss} "
                            f"(known: {', '.join(defaults) or 'none'})")
        if not (isinstance(name, str) and NAME.fullmatch(name)):
            problems.append(f"{where}: name {name!r} must be letters, digits, '_', '.' or '-', starting with a "
                            "letter or digit")
            name = str(name)
        settings = {**defaults, **{k: v for k, v in entry.items() if k in defaults}}
        problems += [f"{where} ({name}): {p}" for p in _arm_problems(settings)]
        arms.append(Arm(name, loss, settings))
    seen = set()
    for arm in arms:
        if arm.name in seen:
            problems.append(f"arms: name {arm.name!r} is used twice")
        seen.add(arm.name)
    return arms


def _arm_problems(settings: dict) -> list[str]:
    problems = []
    for key in ("alpha", "beta", "on_policy"):
        value = settings.get(key)
        if key in settings and (not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1):
            problems.append(f"{key} must lie in [0, 1], got {value!r}")
    for key in ("T", "temperature"):
        value = settings.get(key)
        if key in settings and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                or not math.isfinite(value) or value <= 0):
            problems.append(f"{key} must be a finite number > 0, got {value!r}")
    for key in ("prompt_tokens", "new_tokens"):
        value = settings.get(key)
        if key in settings and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            problems.append(f"{key} must be a positive integer, got {value!r}")
    if "seed" in settings:
        _seed(problems, "seed", settings["seed"])
    if "do_sample" in settings and not isinstance(settings["do_sample"], bool):
        problems.append(f"do_sample must be true or false, got {settings['do_sample']!r}")
    if "tail" in settings and settings["tail"] not in ("renormalize", "bucket"):
        problems.append(f"tail must be renormalize or bucket, got {settings['tail']!r}")
    return problems
