"""Training hyper-parameters shared by every arm of one experiment, validated once.

Kept free of torch so that ``distillab train --help`` (which builds its flags from these fields)
starts fast. Every field carries its help text and its range check in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from distillab.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")

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

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` listing every invalid field at once; return ``self`` if all is well."""
        problems = []

        def need(ok: bool, name: str, message: str) -> None:
            if not ok:
                problems.append(f"{name}={getattr(self, name)!r}: {message}")

        need(isinstance(self.student, str) and bool(self.student), "student", "give 'bow', a folder or a Hub id")
        need(self.epochs > 0, "epochs", "must be > 0")
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be >= 1 or None")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps", "must be >= 1")
        need(
            self.batch_size >= self.gradient_accumulation_steps,
            "gradient_accumulation_steps",
            f"cannot exceed batch_size ({self.batch_size})",
        )
        need(self.learning_rate is None or self.learning_rate > 0, "learning_rate", "must be > 0")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", "must be > 0 or None")
        need(self.max_length >= 2, "max_length", "must be >= 2")
        need(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        need(bool(self.train_split), "train_split", "must name a split")
        need(len(self.eval_splits) == len(set(self.eval_splits)), "eval_splits", "lists a split twice")
        need(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        need(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0")
        need(self.bow_buckets >= 1, "bow_buckets", "must be >= 1")
        need(self.bow_dim >= 1, "bow_dim", "must be >= 1")
        need(self.bow_ngrams in (1, 2, 3), "bow_ngrams", "must be 1, 2 or 3")
        if problems:
            raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))
        return self

    def resolved_learning_rate(self, student_kind: str) -> float:
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LEARNING_RATE[student_kind]

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["eval_splits"] = list(self.eval_splits)
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
