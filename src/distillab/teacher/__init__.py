"""Teacher stage: run a teacher once, keep its outputs in a fingerprinted cache, read them by row id.

Attributes load lazily so ``import distillab.teacher`` (and the CLI) stay fast; torch and
transformers are imported only when a runner actually runs.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TeacherCache": "distillab.teacher.cache",
    "CacheWriter": "distillab.teacher.cache",
    "cache_classifier": "distillab.teacher.hf_classifier",
    "cache_causal_lm": "distillab.teacher.causal_lm",
    "import_logits": "distillab.teacher.importer",
    "summarize": "distillab.teacher.summary",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'distillab.teacher' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
