"""Arms: the weighted objectives a student trains with. Everything else about an experiment is shared.

An arm is a name and one or more terms, each an objective from :mod:`distillab.objectives` with
its settings and a weight; its loss is the weighted sum. One-line syntax (``distillab train --arm``
and config files), terms joined by ``+``::

    vanilla                              cross-entropy on the gold labels
    kd                                   Hinton KD, T=4, alpha=0.7 (the course defaults)
    kd:T=8,alpha=0.9                     Hinton KD with other settings
    kd:T=4,alpha=0.7,tail=bucket         KD from a top-k cache, tail mass as one extra bucket
    hard_kd:alpha=0.5                    CE on the teacher's argmax (weight alpha) + CE on gold
    label_smoothing:epsilon=0.1          cross-entropy with label smoothing
    kd:T=4,alpha=0.7,name=distilled      any arm, with the name its output folder gets
    kd+hidden_mse:weight=0.5,name=fitnet KD plus a FitNets hidden-state term weighted 0.5
    kd:T=4,alpha=0.7,fake_quant=int8     KD through int8 fake-quantized weights (quantization-aware)

Config files may also spell an arm out::

    - name: fitnet_kd
      objectives:
        - kd: {T: 4, alpha: 0.7}
        - hidden_mse: {layers: uniform, weight: 1.0}
      fake_quant: int8                   # optional, as above

``fake_quant`` belongs to the arm, not to an objective: the student's weights are fake-quantized in its
forward pass with the scheme ``distillab quantize`` applies (:mod:`distillab.train.fake_quant`).

Default names spell out the settings (``kd_T4_a0.7``, ``hard_kd_a0.7``, ``label_smoothing_e0.1``)
so that a grid's folders never collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from distillab.errors import ConfigError, InputError
from distillab.objectives import REGISTRY, make_objective
from distillab.objectives.base import Bound, Objective, Reads, Step

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # fullmatch: '$' would let a '\n' end a name
FAKE_QUANT = ("int8",)  # distillab.train.fake_quant.SCHEMES, kept here so parsing needs no torch


@dataclass(frozen=True)
class Term:
    """One objective of an arm and its weight in the arm's loss."""

    objective: Objective
    weight: float = 1.0


@dataclass(frozen=True)
class Arm:
    """One arm: its terms. ``name`` is the arm's output folder and audit label."""

    name: str
    terms: tuple[Term, ...]
    fake_quant: str | None = None  # "int8": train through fake-quantized weights (QAT); None: float training

    @property
    def loss(self) -> str:
        """The objectives' names joined by '+' (``kd``, ``kd+hidden_mse``): the sidecar's ``recipe.loss``."""
        return "+".join(term.objective.name for term in self.terms)

    @property
    def needs_teacher(self) -> bool:
        return any(term.objective.reads().teacher_logits or term.objective.reads().teacher_features
                   for term in self.terms)

    @property
    def needs_live_teacher(self) -> bool:
        return any(term.objective.reads().live for term in self.terms)

    def side_students(self) -> list[str]:
        """Folders (inside the arm's) of the second models it trains and saves as students: ``ema``, ``peer``,
        ``online``. Each is audited beside the arm as ``NAME-folder``.
        """
        reads = [term.objective.reads() for term in self.terms]
        return [side for side, used in (("ema", any(r.ema_logits for r in reads)), ("peer", any(r.peer for r in reads)),
                                        ("online", any(r.online for r in reads))) if used]

    def training_settings(self, config) -> dict:
        """The training settings this arm's result depends on: the live teacher's only if it reads it."""
        settings = config.to_dict()
        if not self.needs_live_teacher:
            settings.pop("live_teacher", None), settings.pop("live_teacher_precision", None)
        return settings

    def only(self, objective: str) -> Objective | None:
        """The arm's objective if the arm is exactly that one objective at weight 1 (float training), else None."""
        if self.fake_quant is None and len(self.terms) == 1 and self.terms[0].objective.name == objective and self.terms[0].weight == 1.0:
            return self.terms[0].objective
        return None

    def recipe(self) -> dict:
        """The sidecar's ``recipe``. A one-objective arm keeps the flat form ``{"loss": "kd", "T": 4.0, ...}``."""
        qat = {"fake_quant": self.fake_quant} if self.fake_quant else {}  # absent: float arms record what they did
        if len(self.terms) == 1 and self.terms[0].weight == 1.0:
            return {"loss": self.loss, **self.terms[0].objective.recipe(), **qat}
        return {"loss": self.loss,
                "objectives": [{"objective": t.objective.name, "weight": float(t.weight), **t.objective.recipe()}
                               for t in self.terms], **qat}

    def problems(self) -> list[str]:
        """Range checks, as messages; empty when the arm is valid."""
        found = []
        if not _NAME.fullmatch(self.name):
            found.append(f"arm name {self.name!r}: use letters, digits, '_', '-' and '.' only")
        if not self.terms:
            found.append(f"arm {self.name!r}: no objectives")
        for term in self.terms:
            found += [f"arm {self.name!r}: {problem}" for problem in term.objective.problems()]
            if not (isinstance(term.weight, (int, float)) and not isinstance(term.weight, bool) and term.weight > 0):
                found.append(f"arm {self.name!r}: {term.objective.name}: weight={term.weight!r} must be a number > 0")
        names = [term.objective.name for term in self.terms]
        found += [f"arm {self.name!r}: objective {n!r} is given twice" for n in sorted(set(names)) if names.count(n) > 1]
        if self.fake_quant is not None and self.fake_quant not in FAKE_QUANT:
            found.append(f"arm {self.name!r}: fake_quant={self.fake_quant!r} must be {' or '.join(FAKE_QUANT)} "
                         "(the scheme distillab quantize applies)")
        return found

    def check_logits_only(self) -> None:
        """Refuse an arm whose objectives need more than student logits and cache rows (outside our trainer)."""
        beyond = sorted(t.objective.name for t in self.terms
                        if t.objective.reads() not in (Reads(), Reads(teacher_logits=True)))
        if beyond:
            raise InputError(f"arm {self.name!r}: {', '.join(beyond)} reads more than logits (hidden states, a live "
                             "teacher, a moving average or a peer); train it with distillab train")
        if self.fake_quant:
            raise InputError(f"arm {self.name!r}: fake_quant is applied by distillab train's loop; train it there")

    def loss_of(self, step: Step, bounds: list[Bound]):
        """The arm's loss for one micro-batch: the weighted sum of its objectives' batch means."""
        total = None
        for term, bound in zip(self.terms, bounds):
            value = term.objective.loss(step, bound)
            value = value if term.weight == 1.0 else value * term.weight
            total = value if total is None else total + value
        return total

    def compute_loss(self, student_logits, labels, teacher: dict | None = None):
        """The loss of an arm that reads only logits (``{"logits"}`` or top-k teacher rows), for one batch."""
        self.check_logits_only()
        if self.needs_teacher and teacher is None:
            raise InputError(f"arm {self.name!r} ({self.loss}) needs teacher rows; pass a teacher cache")
        return self.loss_of(Step(logits=student_logits, labels=labels, teacher=teacher), [Bound()] * len(self.terms))


def parse_arm(text: str) -> Arm:
    """``'kd:T=4,alpha=0.7'`` or ``'kd+hidden_mse:weight=0.5'`` → :class:`Arm`; ConfigError naming the problem."""
    terms, name, fake_quant, arm_keys = [], None, None, set()
    for part in text.split("+"):
        objective, _, rest = part.strip().partition(":")
        objective = objective.strip()
        if objective not in REGISTRY:
            what = f"arm {objective!r}" if "+" not in text else f"objective {objective!r} in arm {text!r}"
            raise ConfigError(f"unknown {what}; choose from {', '.join(sorted(REGISTRY))}")
        settings, weight, term_keys = {}, 1.0, set()
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not eq or not value:
                raise ConfigError(f"arm {text!r}: expected key=value, got {item!r}")
            given = arm_keys if key in ("name", "fake_quant") else term_keys  # an arm's, or this objective's
            if key in given:  # the last one would silently win
                raise ConfigError(f"arm {text!r}: {key!r} is given twice")
            given.add(key)
            if key == "name":
                name = value
            elif key == "fake_quant":
                fake_quant = value
            elif key == "weight":
                weight = _typed(text, key, value, 1.0)
            elif key not in REGISTRY[objective].settings:
                valid = ", ".join([*REGISTRY[objective].settings, "weight", "name", "fake_quant"])
                raise ConfigError(f"arm {text!r}: {objective} has no setting {key!r} (valid: {valid})")
            else:
                settings[key] = _typed(text, key, value, REGISTRY[objective].settings[key].default)
        terms.append(Term(make_objective(objective, **settings), weight))
    return _checked(Arm(name=name or default_name(terms, fake_quant), terms=tuple(terms), fake_quant=fake_quant))


def arm_from_config(spec) -> Arm:
    """An arm from a config entry: its one-line string, or ``{name, objectives: [{objective: {settings}}]}``."""
    if isinstance(spec, str):
        return parse_arm(spec)
    if not isinstance(spec, dict) or set(spec) - {"name", "objectives", "fake_quant"} or "objectives" not in spec:
        raise ConfigError(f"arm {spec!r}: give a string like 'kd:T=4' or a mapping with 'objectives' (and 'name', "
                          "'fake_quant')")
    items = spec["objectives"]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"arm {spec.get('name')!r}: 'objectives' must be a non-empty list")
    terms = []
    for item in items:
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, dict) or len(item) != 1 or not isinstance(next(iter(item.values())) or {}, dict):
            raise ConfigError(f"arm {spec.get('name')!r}: objective {item!r} must be a name or {{name: {{settings}}}}")
        objective, settings = next(iter(item.items()))
        settings = dict(settings or {})
        weight = settings.pop("weight", 1.0)
        terms.append(Term(make_objective(objective, **settings), weight))
    name, fake_quant = spec.get("name"), spec.get("fake_quant")
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"arm name {name!r}: must be a string")
    return _checked(Arm(name=name or default_name(terms, fake_quant), terms=tuple(terms), fake_quant=fake_quant))


def make_arm(loss: str, name: str | None = None, **settings) -> Arm:
    """A one-objective arm from the objective's name and settings (missing ones take the defaults)."""
    term = Term(make_objective(loss, **settings))
    return _checked(Arm(name=name or default_name([term]), terms=(term,)))


def _checked(arm: Arm) -> Arm:
    problems = arm.problems()
    if problems:
        raise ConfigError("; ".join(problems))
    return arm


def _typed(text: str, key: str, value: str, default):
    """A one-line setting's value, typed like its default (bool, int, float or text)."""
    if isinstance(default, bool):
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"arm {text!r}: {key}={value!r} must be true or false")
        return value.lower() == "true"
    if isinstance(default, (int, float)):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"arm {text!r}: {key}={value!r} is not a number") from None
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return value


def default_name(terms: list[Term], fake_quant: str | None = None) -> str:
    return "_".join(_term_name(term) for term in terms) + (f"_qat_{fake_quant}" if fake_quant else "")


def _term_name(term: Term) -> str:
    v, name = term.objective.values, term.objective.name
    if name == "kd":
        suffix = "" if v["tail"] == "renormalize" else f"_{v['tail']}"
        base = f"kd_T{v['T']:g}_a{v['alpha']:g}{suffix}"
    elif name == "hard_kd":
        base = f"hard_kd_a{v['alpha']:g}"
    elif name == "label_smoothing":
        base = f"label_smoothing_e{v['epsilon']:g}"
    else:
        base = name
    return base if term.weight == 1.0 else f"{base}_w{term.weight:g}"


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
