"""Training hyper-parameters shared by every arm of one experiment, validated once.

Kept free of torch so that ``distillab train --help`` (which builds its flags from these fields)
starts fast. Every field carries its help text and its range check in one place.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from distillab.config import MAX_BOW_BUCKETS, _expected, _seed, _type_ok
from distillab.errors import ConfigError

LAYERS_SPEC = re.compile(r"first:[1-9][0-9]*|every[_-]other|[0-9]+(,[0-9]+)*")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Upper bounds that stop a typo (1e12) before it allocates or loops for hours.
MAX_EPOCHS = 10_000
MAX_STEPS = 10**9
MAX_BATCH = 2**20  # rows per step, per forward pass, tokens per text
MAX_BOW_DIM = 2**16
MAX_LEARNING_RATE = 10.0  # an AdamW step moves each weight by about lr: beyond this every run diverges
MAX_BOW_TABLE = 2**30  # bow_buckets x bow_dim floats: 4 GiB, before the optimizer's two moments

# Learning rates that work when the user gives none: the course's 5e-5 for pretrained transformers;
# the bag-of-n-grams student starts from scratch with sparse (lazy) Adam and needs a far larger step.
DEFAULT_LEARNING_RATE = {"hf": 5e-5, "bow": 5e-2}


def _help(text: str, **kwargs: Any):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class TrainConfig:
    """Everything that is the same across the arms of one experiment (only the loss differs)."""

    student: str = _help(
        "'bow' (built-in bag-of-n-grams student), a local model folder, or a Hub id", default="bow"
    )
    student_layers: str | None = _help(
        "keep only some encoder layers of the student: 'first:N', 'every_other' or '0,2,4' "
        "(DistilBERT-style initialisation from a deeper checkpoint)",
        default=None,
    )
    epochs: float = _help("passes over the training split (ignored when max_steps is set)", default=3.0)
    max_steps: int | None = _help("optimizer steps to run; overrides epochs", default=None)
    batch_size: int = _help(
        "rows per optimizer step, over all processes together (so results do not depend on the "
        "process count)",
        default=32,
    )
    gradient_accumulation_steps: int = _help(
        "split each step's batch into this many micro-batches to save memory (same maths)", default=1
    )
    learning_rate: float | None = _help(
        "AdamW peak learning rate; default 5e-5 for transformers, 5e-2 for the bow student", default=None
    )
    weight_decay: float = _help("AdamW decoupled weight decay (not on biases/LayerNorm)", default=0.01)
    warmup_ratio: float = _help("fraction of steps for linear warm-up, then linear decay to 0", default=0.1)
    max_grad_norm: float | None = _help("clip the gradient norm to this (None: no clipping)", default=1.0)
    max_length: int = _help("truncate tokenised texts to this many tokens (transformer students)", default=128)
    seed: int = _help("seeds the student's initialisation, dropout and every epoch's data order", default=42)
    precision: str = _help(
        "'auto' (bf16 on a GPU that has it, else fp16 on GPU, fp32 on CPU), 'fp32', 'bf16' or 'fp16'",
        default="auto",
    )
    train_split: str = _help("dataset split to train on", default="train")
    eval_splits: tuple[str, ...] = _help("splits to write predictions for", default=("test",))
    eval_batch_size: int = _help("rows per forward pass when predicting", default=64)
    checkpoint_every: int = _help(
        "save a resumable checkpoint every N optimizer steps (0: never); a rerun resumes from it",
        default=0,
    )
    bow_buckets: int = _help("hash buckets of the bow student's n-gram table", default=2**18)
    bow_dim: int = _help("embedding size of the bow student", default=64)
    bow_ngrams: int = _help("longest word n-gram of the bow student (1: words only, 2: + bigrams)", default=2)
    live_teacher: str | None = _help(
        "a frozen teacher model run in the training loop for objectives that read its token-level hidden states, "
        "attention or Q/K/V (folder, Hub id or pypi:NAME); its tokens must align with the student's", default=None)
    live_teacher_precision: str = _help("the live teacher's precision: fp32, or int8 (dynamic quantization of its "
                                        "Linear layers, CPU)", default="fp32")

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` listing every invalid field at once; return ``self`` if all is well."""
        found = self.problems()
        if found:
            raise ConfigError("invalid training config:\n  " + "\n  ".join(found))
        return self

    def problems(self, name: Callable[[str], str] = str) -> list[str]:
        """One message per invalid field, types first (``name`` says how to call a field: a flag, a key)."""
        hints = typing.get_type_hints(type(self))
        found, typed = [], set()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if _type_ok(list(value) if isinstance(value, tuple) else value, hints[f.name]):
                typed.add(f.name)
            else:
                found.append(f"{name(f.name)}={value!r}: {_expected(hints[f.name])}")
        for field_name, ok, message in self._ranges(typed):
            if field_name in typed and not ok():
                found.append(f"{name(field_name)}={getattr(self, field_name)!r}: {message}")
        return found

    def _ranges(self, typed: set[str]) -> list[tuple]:
        """(field, check, message) per range rule; run only when the field (and any other it reads) is ``typed``."""
        return [
            ("student", lambda: bool(self.student), "give 'bow', a folder or a Hub id"),
            ("epochs", lambda: 0 < self.epochs <= MAX_EPOCHS, f"must be > 0 and at most {MAX_EPOCHS:,}"),
            ("max_steps", lambda: self.max_steps is None or 1 <= self.max_steps <= MAX_STEPS,
             f"must be in [1, {MAX_STEPS:,}] or None"),
            ("batch_size", lambda: 1 <= self.batch_size <= MAX_BATCH, f"must be in [1, {MAX_BATCH:,}]"),
            ("gradient_accumulation_steps", lambda: self.gradient_accumulation_steps >= 1, "must be >= 1"),
            ("gradient_accumulation_steps", lambda: "batch_size" not in typed
             or self.gradient_accumulation_steps <= self.batch_size, f"cannot exceed batch_size ({self.batch_size})"),
            ("learning_rate", lambda: self.learning_rate is None or 0 < self.learning_rate <= MAX_LEARNING_RATE,
             f"must be in (0, {MAX_LEARNING_RATE:g}] or None"),
            ("weight_decay", lambda: self.weight_decay >= 0, "must be >= 0"),
            ("warmup_ratio", lambda: 0 <= self.warmup_ratio < 1, "must be in [0, 1)"),
            ("max_grad_norm", lambda: self.max_grad_norm is None or self.max_grad_norm > 0, "must be > 0 or None"),
            ("max_length", lambda: 2 <= self.max_length <= MAX_BATCH, f"must be in [2, {MAX_BATCH:,}]"),
            ("seed", lambda: _seed(self.seed), "must be an integer in [0, 2**32)"),
            ("precision", lambda: self.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}"),
            ("train_split", lambda: bool(self.train_split), "must name a split"),
            ("eval_splits", lambda: len(self.eval_splits) == len(set(self.eval_splits)), "lists a split twice"),
            ("eval_batch_size", lambda: 1 <= self.eval_batch_size <= MAX_BATCH, f"must be in [1, {MAX_BATCH:,}]"),
            ("checkpoint_every", lambda: 0 <= self.checkpoint_every <= MAX_STEPS, f"must be in [0, {MAX_STEPS:,}]"),
            ("bow_buckets", lambda: 1 <= self.bow_buckets <= MAX_BOW_BUCKETS, f"must be in [1, {MAX_BOW_BUCKETS:,}]"),
            ("bow_dim", lambda: 1 <= self.bow_dim <= MAX_BOW_DIM, f"must be in [1, {MAX_BOW_DIM:,}]"),
            ("bow_dim", lambda: "bow_buckets" not in typed or self.bow_buckets > MAX_BOW_BUCKETS
             or self.bow_buckets * self.bow_dim <= MAX_BOW_TABLE,
             f"bow_buckets x bow_dim must be at most {MAX_BOW_TABLE:,} (4 GiB of float32 weights)"),
            ("bow_ngrams", lambda: self.bow_ngrams in (1, 2, 3), "must be 1, 2 or 3"),
            # Checked here, before any model is built: the bow student has no layers to keep, so the
            # setting would be silently ignored; the layer count itself is checked when the model loads.
            ("student_layers", lambda: self.student_layers is None or bool(LAYERS_SPEC.fullmatch(self.student_layers.strip())),
             "use 'first:N', 'every_other' or increasing indices like '0,2,4'"),
            ("student_layers", lambda: self.student_layers is None or "student" not in typed or self.student != "bow",
             "only for transformer students (the bow student has no layers)"),
            ("live_teacher", lambda: self.live_teacher is None or bool(self.live_teacher.strip()), "must name a model"),
            ("live_teacher_precision", lambda: self.live_teacher_precision in ("fp32", "int8"), "must be fp32 or int8"),
        ]

    def resolved_learning_rate(self, student_kind: str) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[student_kind]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["eval_splits"] = list(self.eval_splits)
        if self.live_teacher is None:  # runs without one keep the settings record they had before it existed
            del out["live_teacher"], out["live_teacher_precision"]
        return out

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a plain dict (YAML/JSON); unknown keys are an error naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; valid: {', '.join(sorted(names))}")
        values = dict(values)
        if "eval_splits" in values:
            splits = values["eval_splits"]
            values["eval_splits"] = (splits,) if isinstance(splits, str) else tuple(splits)
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (the caller's config is never mutated)."""
        return dataclasses.replace(self, **changes)
