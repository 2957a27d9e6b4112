"""Arms: which loss a student trains with. Everything else about an experiment is shared.

Command-line syntax (also accepted by :func:`parse_arm`)::

    vanilla                              cross-entropy on the gold labels
    kd                                   Hinton KD, T=4, alpha=0.7 (the course defaults)
    kd:T=8,alpha=0.9                     Hinton KD with other settings
    kd:T=4,alpha=0.7,tail=bucket         KD from a top-k cache, tail mass as one extra bucket
    hard_kd:alpha=0.5                    CE on the teacher's argmax (weight alpha) + CE on gold
    label_smoothing:epsilon=0.1          cross-entropy with label smoothing
    kd:T=4,alpha=0.7,name=distilled      any arm, with the name its output folder gets

Default names spell out the settings (``kd_T4_a0.7``, ``hard_kd_a0.7``, ``label_smoothing_e0.1``)
so that a grid's folders never collide. Torch is imported only when a loss is computed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from distillab.errors import ConfigError, InputError

# Each loss's settings and their defaults (course: T_d=4, alpha=0.7; blog 08: epsilon=0.1).
ARM_SETTINGS: dict[str, dict[str, object]] = {
    "vanilla": {},
    "kd": {"T": 4.0, "alpha": 0.7, "tail": "renormalize"},
    "hard_kd": {"alpha": 0.7},
    "label_smoothing": {"epsilon": 0.1},
}
TAILS = ("renormalize", "bucket")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class Arm:
    """One arm: a loss and its settings. ``name`` is the arm's output folder and audit label."""

    name: str
    loss: str
    T: float | None = None
    alpha: float | None = None
    epsilon: float | None = None
    tail: str | None = None

    @property
    def needs_teacher(self) -> bool:
        return self.loss in ("kd", "hard_kd")

    def recipe(self) -> dict:
        """The sidecar's ``recipe``: the loss and only the settings it uses (``tail`` only if not the default)."""
        out: dict = {"loss": self.loss}
        for key in ("T", "alpha", "epsilon"):
            value = getattr(self, key)
            if value is not None:
                out[key] = float(value)
        if self.tail not in (None, "renormalize"):
            out["tail"] = self.tail
        return out

    def problems(self) -> list[str]:
        """Range checks, as messages; empty when the arm is valid."""
        found = []
        if self.loss not in ARM_SETTINGS:
            found.append(f"arm {self.name!r}: unknown loss {self.loss!r}; choose from {', '.join(ARM_SETTINGS)}")
            return found
        if not _NAME.match(self.name):
            found.append(f"arm name {self.name!r}: use letters, digits, '_', '-' and '.' only")
        if self.T is not None and not (math.isfinite(self.T) and self.T > 0):
            found.append(f"arm {self.name!r}: T={self.T} must be > 0")
        if self.alpha is not None and not (0.0 <= self.alpha <= 1.0):
            found.append(f"arm {self.name!r}: alpha={self.alpha} must be in [0, 1]")
        if self.epsilon is not None and not (0.0 <= self.epsilon < 1.0):
            found.append(f"arm {self.name!r}: epsilon={self.epsilon} must be in [0, 1)")
        if self.tail is not None and self.tail not in TAILS:
            found.append(f"arm {self.name!r}: tail={self.tail!r} must be one of {', '.join(TAILS)}")
        return found

    def compute_loss(self, student_logits, labels, teacher: dict | None = None):
        """This arm's loss for one batch (batch mean), computed by :mod:`distillab.losses`.

        ``teacher`` holds the batch's teacher rows: ``{"logits"}`` from a dense cache or
        ``{"topk_ids", "topk_logprobs", "tail_logmass"}`` from a top-k cache.
        """
        from distillab import losses

        if self.loss == "vanilla":
            return losses.cross_entropy(student_logits, labels)
        if self.loss == "label_smoothing":
            return losses.cross_entropy(student_logits, labels, label_smoothing=self.epsilon)
        if teacher is None:
            raise InputError(f"arm {self.name!r} ({self.loss}) needs teacher rows; pass a teacher cache")
        if self.loss == "kd" and "logits" in teacher:
            return losses.kd_loss(student_logits, teacher["logits"], labels, T=self.T, alpha=self.alpha)
        if self.loss == "kd":
            return losses.topk_kd_loss(
                student_logits,
                teacher["topk_ids"],
                teacher["topk_logprobs"],
                teacher["tail_logmass"],
                labels,
                T=self.T,
                alpha=self.alpha,
                tail=self.tail,
            )
        return losses.hard_kd_loss(student_logits, _teacher_scores(teacher, student_logits), labels, alpha=self.alpha)


def _teacher_scores(teacher: dict, student_logits):
    """Dense scores whose argmax is the teacher's top class (top-k caches: their top-1)."""
    if "logits" in teacher:
        return teacher["logits"]
    import torch

    scores = torch.full_like(student_logits, float("-inf"), dtype=torch.float32)
    return scores.scatter(1, teacher["topk_ids"].long(), teacher["topk_logprobs"].float())


def parse_arm(text: str) -> Arm:
    """``'kd:T=4,alpha=0.7'`` → :class:`Arm`. Raises :class:`ConfigError` naming the problem."""
    loss, _, rest = text.strip().partition(":")
    loss = loss.strip()
    if loss not in ARM_SETTINGS:
        raise ConfigError(f"unknown arm {loss!r} in {text!r}; choose from {', '.join(ARM_SETTINGS)}")
    settings = dict(ARM_SETTINGS[loss])
    name = None
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not value:
            raise ConfigError(f"arm {text!r}: expected key=value, got {item!r}")
        if key == "name":
            name = value
        elif key not in settings:
            valid = ", ".join([*settings, "name"])
            raise ConfigError(f"arm {text!r}: {loss} has no setting {key!r} (valid: {valid})")
        elif key == "tail":
            settings[key] = value
        else:
            try:
                settings[key] = float(value)
            except ValueError:
                raise ConfigError(f"arm {text!r}: {key}={value!r} is not a number") from None
    return make_arm(loss, name=name, **settings)


def make_arm(loss: str, name: str | None = None, **settings) -> Arm:
    """Build an arm from a loss name and settings (missing ones take the defaults), then check it."""
    if loss not in ARM_SETTINGS:
        raise ConfigError(f"unknown arm {loss!r}; choose from {', '.join(ARM_SETTINGS)}")
    unknown = sorted(set(settings) - set(ARM_SETTINGS[loss]))
    if unknown:
        raise ConfigError(f"arm {loss}: unknown setting(s) {unknown} (valid: {', '.join(ARM_SETTINGS[loss]) or 'none'})")
    values = {**ARM_SETTINGS[loss], **settings}
    arm = Arm(name=name or default_name(loss, values), loss=loss, **values)
    problems = arm.problems()
    if problems:
        raise ConfigError("; ".join(problems))
    return arm


def default_name(loss: str, settings: dict) -> str:
    if loss == "kd":
        suffix = "" if settings.get("tail", "renormalize") == "renormalize" else f"_{settings['tail']}"
        return f"kd_T{settings['T']:g}_a{settings['alpha']:g}{suffix}"
    if loss == "hard_kd":
        return f"hard_kd_a{settings['alpha']:g}"
    if loss == "label_smoothing":
        return f"label_smoothing_e{settings['epsilon']:g}"
    return loss


def check_arms(arms: list[Arm], cache) -> None:
    """Everything about the arms that can be wrong before training: one error listing all of it."""
    problems = []
    if not arms:
        problems.append("no arms given; add e.g. --arm vanilla --arm kd")
    names = [arm.name for arm in arms]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"two arms are named {dup!r}; give one a name=... setting")
    for arm in arms:
        problems.extend(arm.problems())
        if arm.needs_teacher and cache is None:
            problems.append(f"arm {arm.name!r} ({arm.loss}) needs a teacher cache (--cache DIR)")
    if problems:
        raise ConfigError("; ".join(problems))
