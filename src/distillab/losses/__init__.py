"""Distillation losses (pure torch functions), their float64 references, and the loss checker.

Imports torch lazily so that ``import distillab.losses`` (done by the CLI) stays fast; the
functions below are loaded from :mod:`distillab.losses.kd` on first use.
"""

from distillab.lazy import lazy_exports

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
    "IGNORE_INDEX",
)
_CHECK_EXPORTS = ("check_loss", "check_loss_isolated", "CheckResult")

__all__ = list(_KD_EXPORTS + _CHECK_EXPORTS)

__getattr__, __dir__ = lazy_exports(
    __name__,
    {**dict.fromkeys(_KD_EXPORTS, "distillab.losses.kd"), **dict.fromkeys(_CHECK_EXPORTS, "distillab.losses.check")},
)
