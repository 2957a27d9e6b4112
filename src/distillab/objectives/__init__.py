"""The objective registry: one module per objective in this folder, each ending ``OBJECTIVE = Class``.

Adding an objective is one file here plus its tests; arms name objectives by their ``name``.
Loss arithmetic lives in :mod:`distillab.losses` (with float64 references); a module here says
what the objective reads, which settings it takes and which extras it trains.
"""

from __future__ import annotations

import importlib
import pkgutil

from distillab.errors import ConfigError
from distillab.objectives.base import Objective


def _discover() -> dict[str, type[Objective]]:
    found = {}
    for module in pkgutil.iter_modules(__path__):
        objective = getattr(importlib.import_module(f"{__name__}.{module.name}"), "OBJECTIVE", None)
        if objective is not None:
            found[objective.name] = objective
    return found


REGISTRY: dict[str, type[Objective]] = _discover()


def make_objective(name: str, **settings) -> Objective:
    """An objective by name with its settings (ranges are checked with the arm: :meth:`Objective.problems`)."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown objective {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](**settings)
