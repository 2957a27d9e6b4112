"""int8 dynamic quantization of a trained student, and an audit of what it changes (``distillab quantize``).

``quantize_arm(ARM_DIR, data, split)`` writes ``ARM_DIR/quantized/`` (the int8 model, its predictions, and
``quantization.json``: size, serving cost, agreement, flips by confidence, paired-bootstrap ΔECE/ΔNLL,
temperatures); ``load_quantized_student(DIR)`` serves the int8 model with scikit-learn's interface. ``quantize_stage`` makes
int8 copies of a run's arms as audit arms ``NAME-int8`` (the pipeline's stage); ``quantize_teacher`` quantizes a
teacher before its logits are cached (``distillab teacher --quantize int8``).
Attributes load lazily so that registering the command imports no torch.
"""

from __future__ import annotations

from distillab.lazy import lazy_exports

_LAZY = {
    "quantize_arm": "distillab.quantize.run",
    "quantize_stage": "distillab.quantize.stage",
    "quantize_teacher": "distillab.quantize.backends",
    "resolve_teacher_quantization": "distillab.quantize.backends",
    "load_quantized_student": "distillab.quantize.model",
    "load_quantized_model": "distillab.quantize.model",
    "save_quantized": "distillab.quantize.model",
    "quantize_model": "distillab.quantize.backends",
    "resolve_backend": "distillab.quantize.backends",
    "BACKENDS": "distillab.quantize.backends",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
