"""Post-hoc temperature scaling: ``TemperatureScaler`` (fit → ``temperature_``, transform) and the course's split.

Attributes load lazily so that registering the ``calibrate`` command costs nothing.
"""

from __future__ import annotations

from distillab.lazy import lazy_exports

_LAZY = {
    "TemperatureScaler": "distillab.calibrate.temperature",
    "cal_eval_split": "distillab.calibrate.temperature",
    "calibrate_predictions": "distillab.calibrate.run",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
