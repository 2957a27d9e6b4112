"""What an objective is: its settings, what it reads, the trainable extras it owns, and its loss.

An arm's loss is a weighted sum of objectives (``kd`` + ``hidden_mse``, say). The training loop
knows no objective by name: it asks each one what it reads (:class:`Reads`), runs the student's
forward pass once with what all of them need, builds the extras they own (e.g. projection layers)
and sums ``weight * objective.loss(step, bound)``. Torch is imported only when a loss is built
or computed, so parsing arms (the CLI, ``distillab validate``) stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from distillab.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One setting: its default, a check returning the problem (or None), and what it means."""

    default: Any
    check: Callable[[Any], str | None]
    help: str


def positive(value) -> str | None:
    return None if _number(value) and math.isfinite(value) and value > 0 else "must be > 0"


def non_negative(value) -> str | None:
    return None if _number(value) and math.isfinite(value) and value >= 0 else "must be >= 0"


def unit_interval(value) -> str | None:
    return None if _number(value) and 0.0 <= value <= 1.0 else "must be in [0, 1]"


def open_unit_interval(value) -> str | None:
    return None if _number(value) and 0.0 < value < 1.0 else "must be in (0, 1)"


def below_one(value) -> str | None:
    return None if _number(value) and 0.0 <= value < 1.0 else "must be in [0, 1)"


def positive_int(value) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value > 0 else "must be an integer > 0"


def non_negative_int(value) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "must be an integer >= 0"


def boolean(value) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Reads:
    """What an objective reads, so the loop computes each input once for all of an arm's objectives."""

    teacher_logits: bool = False  # the cache's logit (or top-k) rows
    student_hidden: bool = False  # the student's hidden states (bow: its bag mean)
    teacher_features: bool = False  # cached pooled feature tensors ("pooled.L"); which ones: Bound.pairs
    # From the student and a live (frozen) teacher run in the loop, token by token:
    student_attentions: bool = False  # attention maps [B, H, T, T] per layer
    student_qkv: bool = False  # query/key/value projections [B, T, D] per layer
    ema_logits: bool = False  # logits of an exponential moving average of the student (a mean teacher)
    peer: bool = False  # trains a second student (its extras) on the same rows: saved and audited as NAME-peer
    online: bool = False  # trains a larger model (its extras) on the same rows from inputs of its own: NAME-online
    live_hidden: bool = False
    live_attentions: bool = False
    live_qkv: bool = False

    @property
    def live(self) -> bool:
        return self.live_hidden or self.live_attentions or self.live_qkv


@dataclass(frozen=True)
class Dims:
    """Sizes an objective needs to resolve its layers and build its extras."""

    student_layers: int  # bow: 1 (the bag mean); HF: num_hidden_layers
    student_width: int
    teacher_layers: int = 0  # the teacher's num_hidden_layers (0: the cache has no features)
    teacher_pooled: dict[int, int] = field(default_factory=dict)  # cached pooled layer -> width
    student_tokens: bool = False  # token-level states and attention exist (a transformer student, not bow)
    student_heads: int = 0
    student_ngrams: int = 0  # bow: its longest word n-gram
    student_buckets: int = 0  # bow: its hash buckets
    student_base_layers: int = 0  # HF: num_hidden_layers of the checkpoint before any layers were cut
    live_layers: int = 0  # the live teacher's num_hidden_layers (0: no live teacher)
    live_width: int = 0
    live_heads: int = 0
    new_student: Any = field(default=None, compare=False)  # builds a fresh student model (peers); None in validate
    # (**size changes) -> (student, fresh model) of another size, built under the run's seed (an online teacher)
    new_sized_student: Any = field(default=None, compare=False)


@dataclass
class Step:
    """One micro-batch as the objectives see it (float32 student outputs, teacher rows on device)."""

    logits: Any  # [B, K]
    labels: Any  # [B]
    teacher: dict | None = None  # cache rows: "logits" or top-k arrays, and feature names -> [B, D]
    hidden: tuple | None = None  # student hidden states, index 0 = embeddings; [B, T, D] or [B, D]
    mask: Any = None  # [B, T] attention mask for token-level hidden states, else None
    attentions: dict | None = None  # student layer -> [B, H, T, T] (only the layers objectives asked for)
    qkv: dict | None = None  # student layer -> {"q", "k", "v"} each [B, T, D]
    live: Any = None  # the live teacher's outputs for the same rows: a Step-like LiveOutputs
    ema_logits: Any = None  # [B, K] logits of the student's moving average on the same rows (no gradient)
    inputs: dict | None = None  # the student's batch, for objectives that run a model of their own on it (a peer)
    step: int = 0  # the optimizer step (from 0) this micro-batch belongs to: for warm-ups
    online_inputs: dict | None = None  # the same rows featurised for Bound.student (an online teacher's inputs)

    def pooled(self, index: int):
        """The student's hidden state ``index``, mean-pooled over real tokens: [B, D]."""
        states = self.hidden[index].float()
        if states.dim() == 2:
            return states
        mask = self.mask.to(states.dtype).unsqueeze(-1)
        return (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class Objective:
    """Base class. A subclass sets ``name``, ``family``, ``settings`` and implements :meth:`loss`.

    ``family`` groups arms in the report by what they transfer: ``logits``, ``hidden``, ``attention``,
    ``relation``, ``self`` (the student's own moving average as the teacher) or ``peer`` (students
    teaching each other).
    """

    name: ClassVar[str]
    family: ClassVar[str]
    settings: ClassVar[dict[str, Setting]] = {}
    # Settings that appear in the sidecar recipe only when they differ from the default.
    quiet_defaults: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **values):
        unknown = sorted(set(values) - set(self.settings))
        if unknown:
            valid = ", ".join(self.settings) or "none"
            raise ConfigError(f"objective {self.name}: unknown setting {unknown[0]!r} (valid: {valid})")
        self.values = {key: setting.default for key, setting in self.settings.items()}
        self.values.update(values)

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.values == other.values

    def __hash__(self) -> int:
        return hash((self.name, repr(sorted(self.values.items()))))

    def problems(self) -> list[str]:
        """Range checks of the settings, each naming the objective and setting."""
        found = []
        for key, setting in self.settings.items():
            problem = setting.check(self.values[key])
            if problem:
                found.append(f"{self.name}: {key}={self.values[key]!r} {problem}")
        return found

    def recipe(self) -> dict:
        """Settings as recorded in the sidecar (numbers as floats, quiet defaults left out)."""
        out = {}
        for key, value in self.values.items():
            if key in self.quiet_defaults and value == self.settings[key].default:
                continue
            out[key] = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
        return out

    def reads(self) -> Reads:
        return Reads()

    def resolve(self, dims: Dims) -> list[str]:
        """Check the settings against the student and the cache (layers, features); problems as messages."""
        return []

    def shape_problems(self, dims: Dims) -> list[str]:
        """Width or head-count mismatches the objective cannot bridge (token-level objectives ask)."""
        return []

    def features(self, dims: Dims) -> tuple[str, ...]:
        """Cached teacher features this objective reads (after :meth:`resolve` found no problem)."""
        return ()

    def bind(self, dims: Dims) -> "Bound":
        """What this objective needs for one arm's training: its layer pairs and its trainable extras."""
        return Bound()

    def loss(self, step: Step, bound: "Bound"):
        raise NotImplementedError


@dataclass
class Bound:
    """An objective resolved against one student and cache: layer pairs and the extras it trains.

    ``extras`` (e.g. projections) is trained with the student, checkpointed and saved beside it in
    the arm's folder, and never part of the exported student.
    """

    pairs: tuple[tuple[int, int], ...] = ()  # (student hidden index, teacher cached layer)
    extras: Any = None  # torch.nn.Module or None
    student: Any = None  # featuriser and saver of ``extras`` when it reads inputs of its own (an online teacher)
