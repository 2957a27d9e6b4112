"""Post-hoc temperature scaling: ``TemperatureScaler`` (fit → ``temperature_``, transform) and the course's split.

Attributes load lazily so that registering the ``calibrate`` command costs nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TemperatureScaler": "distillab.calibrate.temperature",
    "cal_eval_split": "distillab.calibrate.temperature",
    "calibrate_predictions": "distillab.calibrate.run",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'distillab.calibrate' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
