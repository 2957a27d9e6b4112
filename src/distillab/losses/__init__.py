"""Distillation losses (pure torch functions), their float64 references, and the loss checker.

Imports torch lazily so that ``import distillab.losses`` (done by the CLI) stays fast; the
functions below are loaded from :mod:`distillab.losses.kd` on first use.
"""

_KD_EXPORTS = (
    "cross_entropy",
    "kd_loss",
    "chunked_kd_loss",
    "topk_kd_loss",
    "hard_kd_loss",
    "kl_loss",
    "reverse_kl_loss",
    "generalized_jsd_loss",
    "topk_targets",
    "HyperparameterError",
    "TAIL_MODES",
)
_CHECK_EXPORTS = ("check_loss", "CheckResult")

__all__ = list(_KD_EXPORTS + _CHECK_EXPORTS)


def __getattr__(name: str):
    import importlib

    if name in _KD_EXPORTS:
        return getattr(importlib.import_module("distillab.losses.kd"), name)
    if name in _CHECK_EXPORTS:
        return getattr(importlib.import_module("distillab.losses.check"), name)
    raise AttributeError(f"module 'distillab.losses' has no attribute {name!r}")
