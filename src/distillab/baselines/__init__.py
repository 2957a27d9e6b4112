"""Reference baselines: "what you would use instead" of distillation, as ordinary predictions files.

A reference baseline is trained on the same train split as the students and predicts the same
evaluation split, so the audit treats it like any other arm (metrics, CIs, calibration). Its
sidecar says ``role: "reference"`` and ``recipe.loss: "reference_baseline"`` so a report can show
it as a reference row, never as a KD arm. Attributes are lazy: scikit-learn loads only on use.
"""

from __future__ import annotations

from distillab.lazy import lazy_exports

_LAZY = {
    "BASELINE_KINDS": "distillab.baselines.stage",
    "baseline_predictions_stage": "distillab.baselines.stage",
    "write_baseline_predictions": "distillab.baselines.stage",
    "TfidfLinear": "distillab.baselines.tfidf_linear",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
